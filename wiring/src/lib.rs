//! One wiring for every binary: the settings, each defined once with its `IMGPIPE_*`
//! variable ([`settings`]), the Lambda functions' view of them ([`functions`]), the
//! backends they name, opened once with the AWS clients built once ([`backends`]), and
//! the deployment that holds them with whoever runs the workflow ([`deployment`]).

pub mod backends;
pub mod deployment;
pub mod functions;
pub mod settings;

pub use backends::{Backends, WorkerSettings, open_db, reporter, runner};
pub use deployment::Deployment;
