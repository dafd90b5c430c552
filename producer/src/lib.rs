//! Intake: everything that turns an image into a job. [`intake`] validates a request
//! and starts the workflow; [`api`] serves it over HTTP; [`watcher`] makes one job per
//! file completed in the local original bucket; [`auth`] holds the API keys
//! and [`limits`] the API's caps.

pub mod api;
pub mod auth;
pub mod error;
pub mod intake;
pub mod limits;
pub mod watcher;
