//! Table tests for S3 event parsing, on fixtures shaped like real and emulator events.

use super::*;

const REAL: &str = include_str!("../tests/fixtures/s3_put_real.json");
const EMULATOR: &str = include_str!("../tests/fixtures/s3_put_emulator.json");
const TEST_EVENT: &str = include_str!("../tests/fixtures/s3_test_event.json");

const KEY: &str = "uploads/2024/my holiday photoé (1).jpg";

#[test]
fn real_s3_event() {
    let got = parse(REAL).expect("parses");
    assert_eq!(
        got,
        [ObjectCreated {
            bucket: "originals".into(),
            key: KEY.into(),
            size: Some(1024),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            event_name: "ObjectCreated:Put".into(),
            sequencer: Some("0055AED6DCD90281E5".into()),
        }]
    );
}

#[test]
fn emulator_event_without_identity_and_with_encoded_slashes() {
    let got = parse(EMULATOR).expect("parses");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].bucket.as_str(), got[0].key.as_str()), ("originals", KEY));
    assert_eq!(got[0].sequencer, None);
}

#[test]
fn test_event_is_skipped() {
    assert!(parse(TEST_EVENT).expect("parses").is_empty());
}

#[test]
fn sns_envelope_is_unwrapped() {
    let wrapped = serde_json::json!({ "Type": "Notification", "MessageId": "x", "Message": REAL }).to_string();
    assert_eq!(parse(&wrapped).expect("parses")[0].key, KEY);
}

#[test]
fn other_event_kinds_are_skipped_and_minimal_records_accepted() {
    let body = r#"{"Records":[
        {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"gone.jpg"}}},
        {"eventName":"s3:ObjectCreated:Copy","s3":{"bucket":{"name":"b"},"object":{"key":"a.jpg","eTag":"\"abc\""}}}
    ]}"#;
    let got = parse(body).expect("parses");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].key.as_str(), got[0].size, got[0].etag.as_deref()), ("a.jpg", None, Some("abc")));
    assert_eq!(got[0].event_name, "ObjectCreated:Copy");
}

#[test]
fn broken_messages_say_why() {
    let cases = [
        ("not json", "not an S3 notification"),
        ("{}", "no Records"),
        (r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}"#, "s3.bucket.name"),
        (
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}"#,
            "s3.object.key",
        ),
        (
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#,
            "UTF-8",
        ),
    ];
    for (body, says) in cases {
        let err = parse(body).expect_err(body).to_string();
        assert!(err.contains(says), "{body}: {err}");
    }
}

#[test]
fn one_bad_record_does_not_cost_the_others() {
    let body = r#"{"Records":[
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"good+one.jpg"}}},
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}},
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"b.jpg"}}}]}"#;
    let parsed = parse_records(body).expect("a notification");
    let keys: Vec<&str> = parsed.created.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["good one.jpg", "b.jpg"]);
    assert_eq!(parsed.refused.len(), 1);
    assert!(parsed.refused[0].to_string().contains("UTF-8"), "{}", parsed.refused[0]);
    assert!(parse(body).is_err(), "the strict reading refuses the message");
    assert!(parse_records("not json").is_err());
}

#[test]
fn form_decoding() {
    for (raw, want) in [
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("dir%2Ffile.jpg", "dir/file.jpg"),
        ("dir/file.jpg", "dir/file.jpg"),
        ("caf%C3%A9", "café"),
        ("100%", "100%"),
        ("%zz%4", "%zz%4"),
        ("%+1", "% 1"),
    ] {
        assert_eq!(form_decode(raw).as_deref(), Some(want), "{raw}");
    }
    assert_eq!(form_decode("%C3"), None);
}
