//! Every AWS request a process sends, counted by service and operation
//! ([`AWS_REQUESTS`](pipeline_core::telemetry::AWS_REQUESTS)), and the SQS receives that came
//! back empty: the figures an AWS bill is made of, read at `/metrics` and by `bench/cost`.
//! Every client [`AwsConfig`](crate::config::AwsConfig) builds carries the counter.

use aws_sdk_sqs::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use pipeline_core::telemetry::{AWS_EMPTY_RECEIVES, AWS_REQUESTS};

/// Counts each request as it is sent: every attempt, so the SDK's retries count, as they do
/// on the bill.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(operation) = cfg.load::<Metadata>() {
            let labels = [("service", operation.service().to_owned()), ("operation", operation.name().to_owned())];
            metrics::counter!(AWS_REQUESTS, &labels).increment(1);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let received = context.inner().output_or_error().and_then(|output| output.ok());
        if let Some(received) = received.and_then(|output| output.downcast_ref::<ReceiveMessageOutput>()) {
            if received.messages().is_empty() {
                metrics::counter!(AWS_EMPTY_RECEIVES).increment(1);
            }
        }
        Ok(())
    }
}
