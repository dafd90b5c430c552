//! `imgpipe submit FILE...`: put each file into the original bucket, start its job, and
//! with `--wait` print each result as the original project's response body.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use pipeline_core::blob::PutOptions;
use producer::intake::{Intake, ProcessRequest};
use protocol::intake::Buckets;
use protocol::keys::guess_content_type;

use protocol::time::parse_duration;
use wiring::Deployment;

/// Arguments of `imgpipe submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// Image files to submit.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Bucket the files are put into.
    #[arg(long, env = "IMGPIPE_SOURCE_BUCKET", default_value = "original")]
    bucket: String,
    /// Bucket the renditions go to.
    #[arg(long, env = "IMGPIPE_DESTINATION_BUCKET", default_value = "resized")]
    destination: String,
    /// Prefix for the keys (`uploads/` makes `uploads/<file name>`).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Wait for each job to end and print its result (needs a running `serve`).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits for each job.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
}

pub(crate) async fn run(stack: &Deployment, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let intake = Intake {
        orchestrator: std::sync::Arc::clone(&stack.orchestrator),
        blobs: stack.blobs(),
        buckets: Buckets::new(&[&args.bucket], &[&args.destination]),
    };
    let mut failed = false;
    let mut jobs = Vec::new();
    for file in &args.files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", file.display()))?;
        let key = format!("{}{name}", args.prefix);
        let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let options = PutOptions { content_type: Some(guess_content_type(&key).into()), cache_control: None };
        stack.blobs().put(&args.bucket, &key, Bytes::from(body), &options).await?;
        let request = ProcessRequest {
            source_bucket: args.bucket.clone(),
            source_key: key.clone(),
            destination_bucket: args.destination.clone(),
            renditions: None,
        };
        // Recorded before the job starts, so a running watcher never makes a second job for the file.
        let path = stack.local_blobs().map(|local| local.bucket_dir(&args.bucket).join(&key));
        if let Some(path) = &path {
            producer::watcher::mark_submitted(&stack.db, &args.bucket, &key, path, "").await?;
        }
        match intake.submit(request).await {
            Ok(job) => {
                if let Some(path) = &path {
                    producer::watcher::mark_submitted(&stack.db, &args.bucket, &key, path, &job.job_id).await?;
                }
                println!("submitted {} as job {}", file.display(), job.job_id);
                jobs.push(job.job_id);
            }
            Err(e) => {
                eprintln!("imgpipe: {}: {e} ({})", file.display(), e.code());
                failed = true;
            }
        }
    }
    if args.wait {
        for id in jobs {
            let deadline = tokio::time::Instant::now() + args.timeout;
            let record = loop {
                let record = stack.orchestrator.get(&id).await?.with_context(|| format!("job {id} vanished"))?;
                if record.state.is_terminal() || tokio::time::Instant::now() >= deadline {
                    break record;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            match (producer::api::seed_result(&record), record.state) {
                (Some(body), _) => println!("{}", serde_json::to_string(&body)?),
                (None, state) if state.is_terminal() => {
                    let error = record.error.map(|e| format!("{}: {}", e.code, e.message)).unwrap_or_default();
                    eprintln!("imgpipe: job {id} ({}) failed: {error}", record.source_key);
                    failed = true;
                }
                (None, state) => {
                    eprintln!(
                        "imgpipe: job {id} still in {} after {:?}; is `imgpipe serve` running?",
                        state.as_str(),
                        args.timeout
                    );
                    failed = true;
                }
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
