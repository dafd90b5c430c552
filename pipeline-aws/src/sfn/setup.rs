//! Creating the `ImageProcessingWorkflow` state machine from the definition the
//! orchestrator generates ([`protocol::asl::definition`]) with the real queue URLs,
//! for tests and a `setup` command. Running it again brings an existing state machine
//! of that name to the new definition.

use aws_sdk_sfn::types::StateMachineType;
use protocol::asl::{self, AslOptions};

use crate::error::AwsError;

/// Why the state machine could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The options make no sound definition (heartbeat not below the timeout).
    #[error("invalid workflow definition: {0}")]
    Definition(String),
    /// The service refused (invalid definition or role, access denied) or failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// A role the emulator accepts; real accounts need one Step Functions can assume, allowed
/// to `sqs:SendMessage` to the jobs queue and the dead-letter queue.
pub const EMULATOR_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/imgpipe-state-machine";

/// Creates the Standard state machine `name` running the workflow with `options` (whose
/// queue URLs must be real ones), assumed by `role_arn`; returns its ARN. An existing
/// state machine of that name gets the new definition and role.
///
/// # Errors
/// [`SetupError`].
pub async fn create_state_machine(
    client: &aws_sdk_sfn::Client,
    name: &str,
    options: &AslOptions,
    role_arn: &str,
) -> Result<String, SetupError> {
    let definition = asl::definition(options).map_err(SetupError::Definition)?.to_string();
    let created = client
        .create_state_machine()
        .name(name)
        .definition(&definition)
        .role_arn(role_arn)
        .r#type(StateMachineType::Standard)
        .send()
        .await;
    let e = match created {
        Ok(out) => return Ok(out.state_machine_arn().to_owned()),
        Err(e) => AwsError::from_sdk("CreateStateMachine", &e),
    };
    if !e.has_code(&["StateMachineAlreadyExists"]) {
        return Err(e.into());
    }
    let Some(arn) = find_state_machine(client, name).await? else { return Err(e.into()) };
    client
        .update_state_machine()
        .state_machine_arn(&arn)
        .definition(definition)
        .role_arn(role_arn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("UpdateStateMachine", &e))?;
    Ok(arn)
}

/// The ARN of the state machine called `name`, if there is one.
///
/// # Errors
/// A service failure.
pub async fn find_state_machine(client: &aws_sdk_sfn::Client, name: &str) -> Result<Option<String>, AwsError> {
    let mut next: Option<String> = None;
    loop {
        let page = client
            .list_state_machines()
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListStateMachines", &e))?;
        if let Some(found) = page.state_machines().iter().find(|m| m.name() == name) {
            return Ok(Some(found.state_machine_arn().to_owned()));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => return Ok(None),
        }
    }
}
