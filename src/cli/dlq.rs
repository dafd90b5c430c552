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
            let items = dead_letter::list(dlq.as_ref()).await?;
            if json {
                let out: Vec<_> = items.iter().map(item_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if items.is_empty() {
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

fn item_json(item: &DlqItem) -> serde_json::Value {
    match &item.letter {
        Ok(letter) => serde_json::json!({
            "messageId": item.message_id, "receiveCount": item.receive_count, "deadLetter": letter,
        }),
        Err(why) => serde_json::json!({
            "messageId": item.message_id, "receiveCount": item.receive_count, "unreadable": why, "body": item.body,
        }),
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
