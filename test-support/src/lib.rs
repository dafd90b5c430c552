//! Rigs the tests share, as a dev-dependency: [`emulator`] connects to the AWS emulator
//! the test command starts (moto server on 127.0.0.1) and makes uniquely named buckets
//! and queues; [`sfn_harness`] deploys the generated state machine there with a real
//! worker, for the Step Functions and Lambda tests.

// A rig that cannot set up fails the test that asked for it: panicking is its error path.
#![allow(clippy::unwrap_used)]

pub mod emulator;
pub mod sfn_harness;
