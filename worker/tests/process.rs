//! `process_job` on local folders: what a job writes to the destination bucket — its
//! renditions always, the metadata sidecar only when the job asks for it.

use std::sync::Arc;

use pipeline_core::blob::local::LocalBlobStore;
use pipeline_core::blob::{BlobStore, PutOptions};
use protocol::Rendition;
use protocol::message::Job;
use protocol::rendition::sidecar_key;
use worker::faults::Faults;
use worker::image::{Limits, MemoryBudget};
use worker::{RenderSlots, WorkerDeps};

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/myphoto.jpg");

/// The keys a job with `sidecar` leaves in the destination bucket.
async fn written(sidecar: bool) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(LocalBlobStore::new(dir.path()));
    blobs.put("original", "a.jpg", PHOTO.to_vec().into(), &PutOptions::default()).await.expect("put");
    let deps = WorkerDeps {
        blobs: blobs.clone(),
        limits: Limits::default(),
        budget: MemoryBudget::unlimited(),
        cache_control: None,
        faults: Faults::default(),
        renders: RenderSlots::new(2),
    };
    let job = Job { sidecar, ..Job::new("original", "a.jpg", "resized", vec![Rendition::thumbnail()]) };
    let done = worker::process_job(&job, &deps).await.expect("processed");
    assert_eq!(done.outputs.len(), 1, "the sidecar is never an output");
    if sidecar {
        let body = blobs.get("resized", &sidecar_key("a.jpg"), 1 << 20).await.expect("the sidecar");
        let value: serde_json::Value = serde_json::from_slice(&body.body).expect("JSON");
        assert_eq!(value["outputs"][0]["key"], "resized/a_thumbnail.jpg", "{value}");
        assert_eq!(value["source"]["key"], "a.jpg", "{value}");
    }
    let mut keys: Vec<String> =
        blobs.list("resized", "").await.expect("list").into_iter().map(|meta| meta.key).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_job_writes_only_its_renditions_unless_it_asks_for_the_sidecar() {
    assert_eq!(written(false).await, ["resized/a_thumbnail.jpg"]);
    assert_eq!(written(true).await, ["resized/a_metadata.json", "resized/a_thumbnail.jpg"]);
}
