use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Env(move |name: &str| map.get(name).cloned())
}

#[test]
fn producers_need_the_state_machine_and_the_buckets() {
    let e = env(&[(ALLOWED_BUCKETS, "orig, resized,")]);
    assert_eq!(ProducerConfig::read(&e, Function::Api), Err(ConfigError::Missing(STATE_MACHINE_ARN)));
    let e = env(&[(ALLOWED_BUCKETS, "orig, resized,"), (STATE_MACHINE_ARN, "arn:sm")]);
    let api = ProducerConfig::read(&e, Function::Api).expect("api config");
    assert_eq!(api.allowed_buckets, ["orig", "resized"]);
    assert_eq!(ProducerConfig::read(&e, Function::S3Event), Err(ConfigError::Missing(DESTINATION_BUCKET)));
    let message = ConfigError::Missing(DESTINATION_BUCKET).to_string();
    assert!(message.starts_with("IMGPIPE_DESTINATION_BUCKET must be set"), "{message}");
}

#[test]
fn only_step_functions_orchestrates_on_lambda() {
    let e = env(&[(ORCHESTRATOR, "embedded"), (DEAD_LETTER_QUEUE, "dlq")]);
    assert!(matches!(WorkerConfig::read(&e), Err(ConfigError::Invalid { name: ORCHESTRATOR, .. })));
    let e = env(&[(ORCHESTRATOR, "stepfunctions"), (DEAD_LETTER_QUEUE, "dlq")]);
    assert!(WorkerConfig::read(&e).is_ok());
}

#[test]
fn worker_defaults_and_overrides() {
    let w = WorkerConfig::read(&env(&[(DEAD_LETTER_QUEUE, "dlq")])).expect("defaults");
    assert_eq!((w.heartbeat_interval, w.max_receive_count), (Duration::from_secs(20), 5));
    assert_eq!(w.cache_control.as_deref(), Some(DEFAULT_CACHE_CONTROL));
    assert_eq!(w.limits, Limits::default());
    let w = WorkerConfig::read(&env(&[
        (DEAD_LETTER_QUEUE, "dlq"),
        (HEARTBEAT_INTERVAL, "1.5m"),
        (MAX_PIXELS, "1000"),
        (CACHE_CONTROL, ""),
        (WORKERS, "0"),
    ]))
    .expect("overrides");
    assert_eq!((w.heartbeat_interval, w.limits.max_pixels, w.concurrency), (Duration::from_secs(90), 1000, 1));
    assert_eq!(w.cache_control, None);
    let bad = WorkerConfig::read(&env(&[(DEAD_LETTER_QUEUE, "dlq"), (MAX_INPUT_BYTES, "lots")]));
    assert!(matches!(bad, Err(ConfigError::Invalid { name: MAX_INPUT_BYTES, .. })), "{bad:?}");
}

#[test]
fn every_variable_is_read_by_someone_and_required_only_where_read() {
    for var in VARS {
        assert!(var.name.starts_with("IMGPIPE_") && !var.read_by.is_empty(), "{var:?}");
        assert!(var.required_by.iter().all(|f| var.read_by.contains(f)), "{var:?}");
    }
}
