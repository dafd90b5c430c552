//! `imgpipe serve` and `imgpipe worker` as library calls: bind, then run every part
//! until the shutdown token is cancelled, draining in-flight work before returning.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use pipeline_core::queue::Queue;
use producer::api::{self, ApiState};
use producer::auth::ApiKeys;
use producer::intake::Intake;
use producer::limits::ApiLimits;
use producer::watcher::FolderWatcher;
use protocol::intake::Buckets;
use protocol::metadata::MetadataPolicy;
use protocol::workflow::Policy;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::s3_intake::S3EventIntake;
use wiring::{Deployment, WorkerSettings};

/// What `serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Buckets jobs may read from and write to; local ones are created if missing.
    pub buckets: Buckets,
    /// The local bucket the folder watcher watches, if any.
    pub watch_bucket: Option<String>,
    /// The queue of S3 ObjectCreated notifications to make jobs from, if any.
    pub s3_events_queue: Option<Arc<dyn Queue>>,
    /// Where the watcher's and the S3 events' jobs write.
    pub destination_bucket: String,
    /// Whether jobs write the metadata sidecar when their request does not say (the
    /// watcher's and the S3 events' never do).
    pub sidecar: bool,
    /// The metadata policy of a job whose request does not say.
    pub metadata: MetadataPolicy,
    /// Workflow pacing.
    pub engine: Policy,
    /// The workers in this process; `runner.concurrency` 0 runs none.
    pub worker: WorkerSettings,
    /// The API keys requests must carry; none turns authentication off, which only a
    /// loopback `listen` allows.
    pub keys: ApiKeys,
    /// The API's caps on requests in flight and waiting, and its request timeout.
    pub limits: ApiLimits,
}

/// Refuses an API open to the network without keys: with no key configured, `listen` must
/// be a loopback address.
///
/// # Errors
/// `listen` is not loopback and `keys` is empty; the message names the settings to use.
pub fn check_exposure(listen: SocketAddr, keys: &ApiKeys) -> anyhow::Result<()> {
    anyhow::ensure!(
        !keys.is_empty() || listen.ip().is_loopback(),
        "refusing to serve the API on {listen} without API keys: set IMGPIPE_API_KEYS (or IMGPIPE_API_KEY_FILE), \
         or listen on a loopback address such as 127.0.0.1:8080"
    );
    Ok(())
}

/// A bound server, ready to run.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    listener: TcpListener,
    stack: Deployment,
    options: ServeOptions,
}

impl Server {
    /// Creates the local buckets and binds the listener.
    ///
    /// # Errors
    /// The listener would be open to the network without keys ([`check_exposure`]), a
    /// bucket cannot be created or the address cannot be bound.
    pub async fn bind(stack: Deployment, options: ServeOptions) -> anyhow::Result<Self> {
        check_exposure(options.listen, &options.keys)?;
        pipeline_core::telemetry::install();
        if let Some(local) = stack.local_blobs() {
            for bucket in &options.buckets.all() {
                local.create_bucket(bucket).with_context(|| format!("cannot create bucket {bucket}"))?;
            }
        }
        let listener =
            TcpListener::bind(options.listen).await.with_context(|| format!("cannot listen on {}", options.listen))?;
        let addr = listener.local_addr()?;
        Ok(Self { addr, listener, stack, options })
    }

    /// Runs the API, the intakes, the orchestrator and the workers until `shutdown`.
    ///
    /// # Errors
    /// The HTTP server failed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server { listener, stack, options, .. } = self;
        let intake = Intake {
            orchestrator: Arc::clone(&stack.orchestrator),
            blobs: stack.blobs(),
            buckets: options.buckets.clone(),
            sidecar: options.sidecar,
            metadata: options.metadata.clone(),
        };
        let mut parts = tokio::task::JoinSet::new();
        if let (Some(bucket), Some(local)) = (&options.watch_bucket, stack.local_blobs()) {
            let dir = local.bucket_dir(bucket);
            let watcher = FolderWatcher::new(&stack.db, dir, bucket, &options.destination_bucket, intake.clone())?;
            parts.spawn(watcher.run(shutdown.clone()));
        }
        if let Some(events) = &options.s3_events_queue {
            let s3 = S3EventIntake {
                events: Arc::clone(events),
                intake: intake.clone(),
                destination_bucket: options.destination_bucket.clone(),
            };
            parts.spawn(s3.run(shutdown.clone()));
        }
        if let Some(engine) = stack.engine.clone() {
            let token = shutdown.clone();
            parts.spawn(async move { engine.run(token).await });
        }
        if options.worker.runner.concurrency > 0 {
            let reporter = wiring::reporter(&stack.args, &stack.backends)?;
            parts.spawn(wiring::runner(&stack.backends, reporter, &options.worker).run(shutdown.clone()));
        }
        let state = ApiState::new(intake, stack.backends.all_queues())
            .with_shutdown(shutdown.clone())
            .with_keys(options.keys.clone())
            .with_limits(options.limits)
            .with_dead_letters(stack.dead_letters());
        let app = api::router(state);
        let token = shutdown.clone();
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { token.cancelled().await }).await;
        shutdown.cancel();
        while parts.join_next().await.is_some() {}
        served.context("HTTP server failed")
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing in-flight work");
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_listeners_may_go_without_keys() {
        let mut keys = ApiKeys::none();
        for open in ["127.0.0.1:8080", "127.0.0.2:0", "[::1]:8080"] {
            check_exposure(open.parse().expect("address"), &keys).expect(open);
        }
        for exposed in ["0.0.0.0:0", "[::]:8080", "192.168.1.10:8080"] {
            let err = check_exposure(exposed.parse().expect("address"), &keys).expect_err(exposed);
            assert!(err.to_string().contains("IMGPIPE_API_KEYS"), "{err}");
        }
        keys.add_list("read:some-key").expect("key");
        check_exposure("0.0.0.0:0".parse().expect("address"), &keys).expect("keys configured");
    }
}
