//! `imgpipe dlq list | show ID | redrive [ID...|--all] | purge [--yes]`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use orchestrator::dead_letter::DlqItem;

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
    let dead_letters = stack.dead_letters();
    match command {
        DlqCommand::List { json } => {
            let survey = dead_letters.survey().await?;
            let items = survey.items;
            if survey.in_flight_elsewhere > 0 {
                eprintln!(
                    "imgpipe: {} more dead letter(s) are in flight elsewhere (being read or redriven) and not listed",
                    survey.in_flight_elsewhere
                );
            }
            if json {
                let out: Vec<_> = items.iter().map(DlqItem::to_json).collect();
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
            let items = dead_letters.survey().await?.items;
            let Some(item) = items.iter().find(|i| i.matches(&id)) else {
                eprintln!("imgpipe: no dead-letter entry {id:?}");
                return Ok(ExitCode::FAILURE);
            };
            println!("{}", serde_json::to_string_pretty(&item.to_json())?);
        }
        DlqCommand::Redrive { ids, all } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name the jobs to redrive, or pass --all");
            }
            let redriven = dead_letters.redrive(&ids).await?;
            for job in &redriven {
                if job.already_restarted {
                    println!(
                        "removed {} ({}/{}): it had been started again before",
                        job.job_id, job.source_bucket, job.source_key
                    );
                    continue;
                }
                println!("redriven {} ({}/{})", job.job_id, job.source_bucket, job.source_key);
                if let Some(fresh) = &job.continues_as {
                    println!("job {} continues as job {fresh}", job.job_id);
                }
            }
            let missing: Vec<_> = ids.iter().filter(|id| !redriven.iter().any(|j| &j.job_id == *id)).collect();
            if !missing.is_empty() {
                eprintln!(
                    "imgpipe: not redriven: {missing:?} (not on the dead-letter queue, unreadable, or an input refused \
                     at intake, which cannot run: purge it)"
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("{} job(s) redriven", redriven.iter().filter(|j| !j.already_restarted).count());
        }
        DlqCommand::Purge { yes } => {
            if !yes && !confirm()? {
                anyhow::bail!("not purged (pass --yes to purge without a prompt)");
            }
            let n = dead_letters.purge().await?;
            println!("purged {n} message(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
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
