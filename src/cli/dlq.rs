//! `imgpipe dlq list | show ID | redrive [ID...|--all] | purge [--yes]`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use orchestrator::dead_letter::{self, DlqItem};
use protocol::message::Job;

use wiring::Deployment;

/// The dead-letter queue's commands.
#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List the failed jobs with their reasons (messages stay on the queue).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry whole, with its failure history. ID is a job id or a message id.
    Show {
        /// Job id or message id.
        id: String,
    },
    /// Start failed jobs again from their first attempt, and remove them from the queue.
    Redrive {
        /// Job ids or message ids to redrive.
        ids: Vec<String>,
        /// Redrive every readable entry.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete every entry.
    Purge {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

fn reason(item: &DlqItem) -> (String, String, String, u32) {
    match &item.letter {
        Ok(l) => (
            l.job.job_id.clone(),
            l.error.code.clone(),
            format!("{}/{}: {}", l.job.source_bucket, l.job.source_key, l.error.message),
            l.attempts,
        ),
        Err(why) => (item.message_id.clone(), "Unreadable".into(), why.clone(), 0),
    }
}

pub(crate) async fn run(stack: &Deployment, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let dlq = std::sync::Arc::clone(&stack.backends.dead_letters);
    match command {
        DlqCommand::List { json } => {
            let survey = dead_letter::survey(dlq.as_ref()).await?;
            let items = survey.items;
            if survey.in_flight_elsewhere > 0 {
                eprintln!(
                    "imgpipe: {} more dead letter(s) are in flight elsewhere (being read or redriven) and not listed",
                    survey.in_flight_elsewhere
                );
            }
            if json {
                let out: Vec<_> = items.iter().map(item_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if items.is_empty() && survey.in_flight_elsewhere == 0 {
                println!("the dead-letter queue is empty");
            } else {
                println!("{:<36}  {:<24}  {:>8}  REASON", "JOB ID", "ERROR", "ATTEMPTS");
                for item in &items {
                    let (id, code, why, attempts) = reason(item);
                    println!("{id:<36}  {code:<24}  {attempts:>8}  {why}");
                }
            }
        }
        DlqCommand::Show { id } => {
            let items = dead_letter::list(dlq.as_ref()).await?;
            let Some(item) = items.iter().find(|i| i.matches(&id)) else {
                eprintln!("imgpipe: no dead-letter entry {id:?}");
                return Ok(ExitCode::FAILURE);
            };
            println!("{}", serde_json::to_string_pretty(&item_json(item))?);
        }
        DlqCommand::Redrive { ids, all } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name the jobs to redrive, or pass --all");
            }
            let redriven = match &stack.engine {
                // The embedded engine restarts the same job, history kept.
                Some(engine) => dead_letter::redrive(dlq.as_ref(), &ids, |job| engine.redrive(job)).await?,
                // A finished execution cannot be restarted: a fresh execution takes the job over.
                None => {
                    dead_letter::redrive(dlq.as_ref(), &ids, |job| async move {
                        let fresh = Job::new(job.source_bucket, job.source_key, job.destination_bucket, job.renditions);
                        println!("job {} continues as job {}", job.job_id, fresh.job_id);
                        stack.orchestrator.start(fresh).await.map_err(Into::into)
                    })
                    .await?
                }
            };
            for job in &redriven {
                println!("redriven {} ({}/{})", job.job_id, job.source_bucket, job.source_key);
            }
            let missing: Vec<_> = ids.iter().filter(|id| !redriven.iter().any(|j| &j.job_id == *id)).collect();
            if !missing.is_empty() {
                eprintln!("imgpipe: not on the dead-letter queue (or unreadable): {missing:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{} job(s) redriven", redriven.len());
        }
        DlqCommand::Purge { yes } => {
            if !yes && !confirm()? {
                anyhow::bail!("not purged (pass --yes to purge without a prompt)");
            }
            let n = dead_letter::purge(dlq.as_ref()).await?;
            println!("purged {n} message(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An entry as `list --json` and `show` print it, task tokens redacted.
fn item_json(item: &DlqItem) -> serde_json::Value {
    let mut json = match &item.letter {
        Ok(letter) => serde_json::json!({
            "messageId": item.message_id, "receiveCount": item.receive_count, "deadLetter": letter,
        }),
        Err(why) => {
            let body = match serde_json::from_str::<serde_json::Value>(&item.body) {
                Ok(mut body) => {
                    redact_tokens(&mut body);
                    body.to_string()
                }
                Err(_) if item.body.contains("taskToken") => REDACTED.to_owned(),
                Err(_) => item.body.clone(),
            };
            serde_json::json!({
                "messageId": item.message_id, "receiveCount": item.receive_count, "unreadable": why, "body": body,
            })
        }
    };
    redact_tokens(&mut json);
    json
}

const REDACTED: &str = "<redacted>";

/// A task token lets whoever holds it answer for a Step Functions task: never printed.
fn redact_tokens(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                if name == "taskToken" {
                    *field = REDACTED.into();
                } else {
                    redact_tokens(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_tokens),
        _ => {}
    }
}

fn confirm() -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    print!("Delete every message on the dead-letter queue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::dead_letter::DeadLetter;
    use protocol::error::JobError;
    use protocol::job::{JobRecord, JobState};

    #[test]
    fn task_tokens_are_never_printed() {
        let record = JobRecord {
            job_id: "j1".into(),
            state: JobState::DeadLetter,
            attempts: 3,
            source_bucket: "original".into(),
            source_key: "a.jpg".into(),
            destination_bucket: "resized".into(),
            renditions: vec![protocol::Rendition::thumbnail()],
            created_at: String::new(),
            updated_at: String::new(),
            outputs: Vec::new(),
            metadata: None,
            error: Some(JobError::permanent("CorruptImage", "bad")),
            history: Vec::new(),
        };
        let mut letter = DeadLetter::from_record(&record);
        letter.job.task_token = Some("SECRET-TOKEN".into());
        let body = serde_json::to_string(&letter.job).expect("json");
        let items = [
            DlqItem { message_id: "m1".into(), body: body.clone(), letter: Ok(letter), receive_count: 1 },
            DlqItem { message_id: "m2".into(), body, letter: Err("unknown version".into()), receive_count: 1 },
            DlqItem {
                message_id: "m3".into(),
                body: r#"{"taskToken":"SECRET-TOKEN","#.into(),
                letter: Err("not JSON".into()),
                receive_count: 1,
            },
        ];
        for item in &items {
            let shown = serde_json::to_string_pretty(&item_json(item)).expect("json");
            assert!(!shown.contains("SECRET-TOKEN"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }
}
