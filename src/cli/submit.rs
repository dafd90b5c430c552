//! `imgpipe submit FILE|DIR|GLOB...`: put each file into the original bucket, start its job,
//! and with `--wait` print each result as the original project's response body. Progress on
//! stderr as it goes (see [`super::progress`]), a summary table at the end.

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

use super::progress::{Progress, ProgressMode, summary};
use wiring::Deployment;
use wiring::settings::JobDefaults;

/// Arguments of `imgpipe submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// Image files, folders (every file under them, keyed by its path inside) or quoted
    /// glob patterns (`'shoot/*.jpg'`).
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
    /// How progress is shown on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Whether each job writes the metadata sidecar, and which metadata its outputs keep.
    #[command(flatten)]
    job_defaults: JobDefaults,
}

/// Every file `inputs` name, each with its key below the prefix: a file by its name, a folder's
/// files by their path inside it, a glob pattern's matches by their names.
fn expand(inputs: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        let text = input.to_str().with_context(|| format!("{} is not UTF-8", input.display()))?;
        if input.is_dir() {
            walk(input, "", &mut out)?;
        } else if !input.exists() && text.contains(['*', '?', '[']) {
            let matches = glob::glob(text).with_context(|| format!("bad pattern {text:?}"))?;
            let before = out.len();
            for path in matches {
                let path = path?;
                if path.is_file() {
                    let key = file_name(&path)?;
                    out.push((path, key));
                }
            }
            anyhow::ensure!(out.len() > before, "no file matches {text:?}");
        } else {
            let key = file_name(input)?;
            out.push((input.clone(), key));
        }
    }
    // Two files under one key would overwrite each other in the bucket.
    let mut keys: Vec<&str> = out.iter().map(|(_, k)| k.as_str()).collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!(
            "two of the files would both be {:?}: submit them from their folder, or one at a time with --prefix",
            pair[0]
        );
    }
    Ok(out)
}

fn file_name(path: &std::path::Path) -> anyhow::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no file name a key can hold (UTF-8)", path.display()))
}

fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<(PathBuf, String)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = file_name(&path)?;
        if path.is_dir() {
            walk(&path, &format!("{prefix}{name}/"), out)?;
        } else if path.is_file() {
            out.push((path, format!("{prefix}{name}")));
        }
    }
    Ok(())
}

pub(crate) async fn run(stack: &Deployment, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let intake = Intake {
        orchestrator: std::sync::Arc::clone(&stack.orchestrator),
        blobs: stack.blobs(),
        buckets: Buckets::new(&[&args.bucket], &[&args.destination]),
        sidecar: args.job_defaults.sidecar,
        metadata: args.job_defaults.metadata.clone(),
    };
    let files = expand(&args.files)?;
    let mut failed = false;
    let mut jobs = Vec::new();
    let mut progress = Progress::new("submitted", files.len() as u64, args.progress);
    for (file, name) in &files {
        let key = format!("{}{name}", args.prefix);
        let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let options = PutOptions { content_type: Some(guess_content_type(&key).into()), cache_control: None };
        stack.blobs().put(&args.bucket, &key, Bytes::from(body), &options).await?;
        let request = ProcessRequest {
            source_bucket: args.bucket.clone(),
            source_key: key.clone(),
            destination_bucket: args.destination.clone(),
            renditions: None,
            sidecar: None,
            metadata: None,
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
                progress.tick(false);
            }
            Err(e) => {
                progress.println(&format!("imgpipe: {}: {e} ({})", file.display(), e.code()));
                failed = true;
                progress.tick(true);
            }
        }
    }
    let mut rows = vec![progress.finish()];
    if args.wait {
        let mut progress = Progress::new("processed", jobs.len() as u64, args.progress);
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
                (Some(body), _) => {
                    println!("{}", serde_json::to_string(&body)?);
                    progress.tick(false);
                }
                (None, state) if state.is_terminal() => {
                    let error = record.error.map(|e| format!("{}: {}", e.code, e.message)).unwrap_or_default();
                    progress.println(&format!("imgpipe: job {id} ({}) failed: {error}", record.source_key));
                    failed = true;
                    progress.tick(true);
                }
                (None, state) => {
                    progress.println(&format!(
                        "imgpipe: job {id} still in {} after {:?}; is `imgpipe serve` running?",
                        state.as_str(),
                        args.timeout
                    ));
                    failed = true;
                    progress.tick(true);
                }
            }
        }
        rows.push(progress.finish());
    }
    if args.progress != ProgressMode::None || failed {
        eprint!("{}", summary(&rows));
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
