//! S3 ObjectCreated notifications as they reach an SQS queue, parsed leniently: only the
//! bucket name and object key are required (emulators omit `userIdentity`,
//! `requestParameters` and more), keys are form-decoded (`+` is a space, `%2F` a slash),
//! `s3:TestEvent` messages and other event kinds are skipped, and a notification wrapped
//! in an SNS envelope is unwrapped.

use serde::Deserialize;

/// One object created, as a notification record names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectCreated {
    /// The bucket.
    pub bucket: String,
    /// The object key, decoded.
    pub key: String,
    /// The object's size, when the event carries it.
    pub size: Option<u64>,
    /// The object's ETag without quotes, when the event carries it.
    pub etag: Option<String>,
    /// The event's name, e.g. `ObjectCreated:Put`.
    pub event_name: String,
    /// Orders events for one key (hex, compare as strings of equal length), when present.
    pub sequencer: Option<String>,
}

/// Why a message is not a readable S3 notification.
#[derive(Debug, thiserror::Error)]
pub enum S3EventError {
    /// Not JSON, or not an object.
    #[error("not an S3 notification: {0}")]
    NotJson(#[from] serde_json::Error),
    /// JSON, but neither `Records` nor a test event nor an SNS envelope.
    #[error("not an S3 notification: no Records")]
    NoRecords,
    /// A record without the bucket name or the object key.
    #[error("S3 event record {index} has no {missing}")]
    MissingField {
        /// The record's position in `Records`.
        index: usize,
        /// `s3.bucket.name` or `s3.object.key`.
        missing: &'static str,
    },
    /// A key that does not decode to UTF-8.
    #[error("S3 event key {0:?} does not decode to UTF-8")]
    BadKey(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS wraps the notification as a JSON string.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    sns_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    event_name: String,
    s3: Option<Entity>,
}

#[derive(Deserialize)]
struct Entity {
    bucket: Option<Bucket>,
    object: Option<Object>,
}

#[derive(Deserialize)]
struct Bucket {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    key: Option<String>,
    size: Option<u64>,
    e_tag: Option<String>,
    sequencer: Option<String>,
}

/// What a notification message names, record by record.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The objects created (none for a test event, or events of other kinds).
    pub created: Vec<ObjectCreated>,
    /// Records that name an object creation but cannot be read (no bucket or key, a key
    /// that is not UTF-8): the others are still handled.
    pub refused: Vec<S3EventError>,
}

/// The objects created that a notification message names, and the records that cannot be
/// read: one bad record does not cost the others.
///
/// # Errors
/// [`S3EventError`] for a message that is not an S3 notification at all.
pub fn parse_records(body: &str) -> Result<Parsed, S3EventError> {
    let envelope: Envelope = serde_json::from_str(body)?;
    if envelope.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Parsed::default());
    }
    if let (Some("Notification"), Some(inner)) = (envelope.sns_type.as_deref(), envelope.sns_message.as_deref()) {
        return parse_records(inner);
    }
    let records = envelope.records.ok_or(S3EventError::NoRecords)?;
    let mut parsed = Parsed::default();
    for (index, record) in records.into_iter().enumerate() {
        match read_record(index, record) {
            Ok(Some(created)) => parsed.created.push(created),
            Ok(None) => {}
            Err(e) => parsed.refused.push(e),
        }
    }
    Ok(parsed)
}

/// The objects created that a notification message names; empty for a test event or
/// for events of other kinds (removals, restores).
///
/// # Errors
/// [`S3EventError`] for a message that is not an S3 notification, or any record of it
/// that cannot be read.
pub fn parse(body: &str) -> Result<Vec<ObjectCreated>, S3EventError> {
    let mut parsed = parse_records(body)?;
    match parsed.refused.pop() {
        Some(e) => Err(e),
        None => Ok(parsed.created),
    }
}

/// One record: `None` for an event that creates nothing.
fn read_record(index: usize, record: Record) -> Result<Option<ObjectCreated>, S3EventError> {
    // Real S3 says `ObjectCreated:Put`; some senders keep the `s3:` prefix.
    let name = record.event_name.strip_prefix("s3:").unwrap_or(&record.event_name);
    if !name.starts_with("ObjectCreated:") {
        return Ok(None);
    }
    let entity = record.s3.ok_or(S3EventError::MissingField { index, missing: "s3" })?;
    let bucket = entity
        .bucket
        .and_then(|b| b.name)
        .filter(|n| !n.is_empty())
        .ok_or(S3EventError::MissingField { index, missing: "s3.bucket.name" })?;
    let object = entity.object.ok_or(S3EventError::MissingField { index, missing: "s3.object" })?;
    let raw_key =
        object.key.filter(|k| !k.is_empty()).ok_or(S3EventError::MissingField { index, missing: "s3.object.key" })?;
    let key = form_decode(&raw_key).ok_or(S3EventError::BadKey(raw_key))?;
    Ok(Some(ObjectCreated {
        bucket,
        key,
        size: object.size,
        etag: object.e_tag.map(|t| t.trim_matches('"').to_owned()).filter(|t| !t.is_empty()),
        event_name: name.to_owned(),
        sequencer: object.sequencer,
    }))
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. A `%`
/// not followed by two hex digits is kept as it is. `None` when the bytes are not UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[path = "s3_event_tests.rs"]
mod tests;
