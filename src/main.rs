//! imgpipe CLI
fn main() {}
