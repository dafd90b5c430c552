//! What the emulator tests share: finding the emulator, and uniquely named buckets and
//! queues (and tables) so tests run in parallel on one server.

use pipeline_aws::setup::{self, QueueSettings};
use pipeline_aws::{AwsBackends, AwsConfig, DynamoJobs, S3BlobStore, SqsQueue};

/// The variable naming the emulator's endpoint.
pub const ENDPOINT_VAR: &str = "IMGPIPE_TEST_AWS_ENDPOINT";

/// The emulator's endpoint; fails the test, saying how to start it, when unset.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{ENDPOINT_VAR} is not set: the AWS tests run against the emulator (moto server) on 127.0.0.1.\n\
             Start it and run them with:\n    eval \"$(scripts/moto.sh start)\" && cargo test -p pipeline-aws\n\
             and stop it with scripts/moto.sh stop"
        ),
    }
}

/// Fresh clients on the emulator (each call its own connection pool, as another process would have).
pub async fn aws() -> AwsBackends {
    AwsBackends::new(AwsConfig::for_endpoint(&endpoint()).await)
}

/// A name no other test uses: `prefix-<12 hex>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A new empty bucket.
pub async fn bucket(aws: &AwsBackends, prefix: &str) -> (S3BlobStore, String) {
    let store = aws.s3();
    let name = unique(prefix);
    store.create_bucket(&name).await.unwrap();
    (store, name)
}

/// A new queue with a 30 s default visibility.
pub async fn queue(aws: &AwsBackends, prefix: &str) -> SqsQueue {
    setup::create_queue(&aws.clients().sqs, &unique(prefix), &QueueSettings::default()).await.unwrap()
}

/// A new, empty table of the workflow engine's jobs.
pub async fn jobs_table(aws: &AwsBackends) -> DynamoJobs {
    let store = DynamoJobs::new(aws.clients().dynamodb.clone(), unique("jobs"));
    store.create_table().await.unwrap();
    store
}
