//! `imgpipe jobs [ID]`: recent jobs as a table, or one job with its history as JSON.

use std::process::ExitCode;

use wiring::Deployment;

/// Arguments of `imgpipe jobs`.
#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    /// Show this job whole (state, attempts, history, outputs, error) as JSON.
    id: Option<String>,
    /// How many recent jobs to list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(stack: &Deployment, args: JobsArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = args.id {
        let Some(record) = stack.orchestrator.get(&id).await? else {
            eprintln!("imgpipe: no job {id:?}");
            return Ok(ExitCode::FAILURE);
        };
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = stack.orchestrator.list(args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<36}  {:<12}  {:>8}  {:<24}  SOURCE", "JOB ID", "STATE", "ATTEMPTS", "UPDATED");
    for j in jobs {
        println!(
            "{:<36}  {:<12}  {:>8}  {:<24}  {}/{}",
            j.job_id,
            j.state.as_str(),
            j.attempts,
            j.updated_at,
            j.source_bucket,
            j.source_key
        );
    }
    Ok(ExitCode::SUCCESS)
}
