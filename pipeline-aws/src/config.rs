//! The AWS settings, loaded once from the standard sources (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_PROFILE`, credentials files, container and instance roles),
//! with connect and read timeouts, and the clients built from them once and shared,
//! each counting the requests it sends (`requests`).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

use crate::requests::CountRequests;

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may keep the client waiting for its next bytes: past a long poll's
/// 20 s, so a stalled service (or a paused emulator) fails the attempt and the SDK's retries
/// and ours take over, instead of a call that never returns.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn defaults() -> ConfigLoader {
    let timeouts = TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT).build();
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts)
}

/// The region used when none is configured and an emulator endpoint is.
pub const EMULATOR_REGION: &str = "us-east-1";

/// Loaded AWS settings. Cheap to clone; build clients from it once, at start-up.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    sdk: SdkConfig,
}

impl AwsConfig {
    /// Loads the settings the way the AWS CLI does. With `AWS_ENDPOINT_URL` set (an
    /// emulator) and no region configured, the region is [`EMULATOR_REGION`].
    pub async fn from_env() -> Self {
        let sdk = defaults().load().await;
        if sdk.region().is_none() && sdk.endpoint_url().is_some() {
            let sdk = sdk.into_builder().region(Region::new(EMULATOR_REGION)).build();
            return Self { sdk };
        }
        Self { sdk }
    }

    /// Settings for an emulator at `endpoint` (e.g. `http://127.0.0.1:5000`): fixed dummy
    /// credentials and [`EMULATOR_REGION`], whatever the environment says.
    pub async fn for_endpoint(endpoint: &str) -> Self {
        let sdk = defaults()
            .endpoint_url(endpoint)
            .region(Region::new(EMULATOR_REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
            .load()
            .await;
        Self { sdk }
    }

    /// Wraps settings built elsewhere.
    pub fn from_sdk(sdk: SdkConfig) -> Self {
        Self { sdk }
    }

    /// The SDK settings.
    pub fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The endpoint override, when one is set (an emulator or a VPC endpoint).
    pub fn endpoint_url(&self) -> Option<&str> {
        self.sdk.endpoint_url()
    }

    /// The region, when one is configured.
    pub fn region(&self) -> Option<&str> {
        self.sdk.region().map(Region::as_ref)
    }

    /// An S3 client. With an endpoint override it addresses buckets by path
    /// (`http://host/bucket/key`), as emulators need.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.endpoint_url().is_some())
            .interceptor(CountRequests)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// An SQS client.
    pub fn sqs_client(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(&self.sdk).interceptor(CountRequests).build())
    }

    /// A Step Functions client.
    pub fn sfn_client(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::from_conf(aws_sdk_sfn::config::Builder::from(&self.sdk).interceptor(CountRequests).build())
    }

    /// A DynamoDB client.
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(CountRequests).build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// Every client, built once.
    pub fn clients(&self) -> AwsClients {
        AwsClients {
            s3: self.s3_client(),
            sqs: self.sqs_client(),
            sfn: self.sfn_client(),
            dynamodb: self.dynamodb_client(),
        }
    }
}

/// The S3, SQS and Step Functions clients a process shares. Clones share the connection pools.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// Step Functions.
    pub sfn: aws_sdk_sfn::Client,
    /// DynamoDB (the engine's job store).
    pub dynamodb: aws_sdk_dynamodb::Client,
}
