//! Feeds arbitrary bytes to the API's request path as `POST /process` reads a body: JSON into
//! a `ProcessRequest`, then every check that needs no storage (buckets, key, renditions).
//! Whatever passes must keep the promises the rest of the pipeline relies on: each output key
//! (the sidecar's included, when asked for) is itself a valid key under the output prefix,
//! never a source, one per rendition, and the job message survives the queue's JSON unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use producer::intake::ProcessRequest;
use protocol::intake::Buckets;
use protocol::keys::validate_key;
use protocol::message::Job;
use protocol::rendition::{OUTPUT_PREFIX, output_key, sidecar_key};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ProcessRequest>(data) else { return };
    // `shared` is read and written, so sources under the output prefix are in play.
    let buckets = Buckets::new(&["original", "shared"], &["resized", "shared"]);
    // Without a choice in the request, the sidecar is asked for, so its key is checked too.
    let Ok((renditions, sidecar)) = request.validate(&buckets, true) else { return };
    let mut keys: Vec<String> = renditions.iter().map(|r| output_key(&request.source_key, r)).collect();
    keys.extend(sidecar.then(|| sidecar_key(&request.source_key)));
    for key in &keys {
        assert!(validate_key(key).is_ok(), "output key {key:?} is not a valid key");
        assert!(key.starts_with(OUTPUT_PREFIX), "output key {key:?} is outside the output prefix");
        // So the watcher and the S3 intakes never take an output for a new upload.
        assert!(buckets.is_output(&request.destination_bucket, key), "output key {key:?} would be taken for a source");
        assert_ne!(key, &request.source_key, "an output overwrites its source");
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), renditions.len() + usize::from(sidecar), "two outputs share a key");
    let metadata = request.metadata.unwrap_or_default().normalized();
    let job = Job {
        sidecar,
        metadata,
        ..Job::new(request.source_bucket, request.source_key, request.destination_bucket, renditions)
    };
    let back = Job::from_json(&job.to_json()).expect("a job message reads back");
    assert_eq!(back, job);
});
