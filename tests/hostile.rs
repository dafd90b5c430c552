//! The hostile suite: files built here to be as bad for the service as we can make them —
//! the largest images the limits let in (100 MP progressive JPEGs, 16-bit RGBA PNGs), pixel
//! bombs declared by their headers, a GIF frame larger than its canvas, an ICC bomb, a
//! text file — submitted together to one `imgpipe worker` process with four job slots and a
//! 1 GiB memory budget. Each ends in a clear outcome, the worker lives, and its peak RSS stays
//! within the budget: the worst inputs at full concurrency fit. Run with `--nocapture` for the
//! table and the figure.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use protocol::job::{JobRecord, JobState};

/// The worker's memory budget.
const BUDGET_MIB: u64 = 1024;
/// What the worker process holds besides the renders: code, runtime, SQLite, sources read.
const BASELINE_MIB: u64 = 256;

/// A 100-megapixel progressive JPEG, full-resolution chroma: the decoder keeps every DCT
/// coefficient of the image (600 MB) however small the thumbnail.
fn worst_jpeg(seed: u8) -> Vec<u8> {
    let (w, h) = (10_000usize, 10_000usize);
    let mut pixels = vec![0u8; w * h * 3];
    for (i, row) in pixels.chunks_mut(w * 3).enumerate() {
        for (j, px) in row.chunks_mut(3).enumerate() {
            px.copy_from_slice(&[(i / 40) as u8, (j / 40) as u8, seed.wrapping_add(((i ^ j) & 0x3F) as u8)]);
        }
    }
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut compressor = turbojpeg::Compressor::new().expect("compressor");
    compressor.set_subsamp(turbojpeg::Subsamp::None).expect("4:4:4");
    compressor.set_progressive(true).expect("progressive");
    compressor.set_quality(85).expect("quality");
    compressor.compress_to_vec(image).expect("compress")
}

/// A 4000×4000 16-bit RGBA PNG (128 MB of samples, 8 bytes a pixel).
fn deep_png() -> Vec<u8> {
    let img = image::ImageBuffer::<image::Rgba<u16>, Vec<u16>>::from_fn(4000, 4000, |x, y| {
        image::Rgba([(x * 16) as u16, (y * 16) as u16, 30_000, 65_535])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encode");
    out.into_inner()
}

/// A 64×64 PNG whose `iCCP` profile inflates to 128 MiB.
fn icc_bomb_png() -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
    encoder.set_icc_profile(vec![7; 128 << 20]).expect("a profile");
    encoder.write_image(&[200; 64 * 64 * 3], 64, 64, image::ExtendedColorType::Rgb8).expect("encode");
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG whose header declares `w`×`h` RGBA and whose data is one tiny chunk.
fn header_bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let body = [kind.as_slice(), data].concat();
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let ihdr = [w.to_be_bytes().as_slice(), &h.to_be_bytes(), &[8, 6, 0, 0, 0]].concat();
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

/// A 16×16 GIF whose one frame declares 60000×60000.
fn frame_bomb_gif() -> Vec<u8> {
    let mut g = b"GIF89a\x10\x00\x10\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    g.extend_from_slice(&[0x2C, 0, 0, 0, 0]);
    g.extend_from_slice(&60_000u16.to_le_bytes());
    g.extend_from_slice(&60_000u16.to_le_bytes());
    g.extend_from_slice(&[0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    g
}

/// What each file must come to: `Ok` for success, or the failure's code.
struct Case {
    key: &'static str,
    bytes: Vec<u8>,
    renditions: serde_json::Value,
    expect: Result<(), &'static str>,
}

fn thumbnail() -> serde_json::Value {
    serde_json::json!([{ "name": "thumbnail", "width": 512, "height": 512 }])
}

fn cases() -> Vec<Case> {
    let case = |key, bytes, expect| Case { key, bytes, renditions: thumbnail(), expect };
    let mut cases: Vec<Case> = (0..4u8)
        .map(|i| {
            case(["worst-0.jpg", "worst-1.jpg", "worst-2.jpg", "worst-3.jpg"][usize::from(i)], worst_jpeg(i), Ok(()))
        })
        .collect();
    let deep = deep_png();
    cases.push(case("deep-0.png", deep.clone(), Ok(())));
    cases.push(case("deep-1.png", deep, Ok(())));
    cases.push(Case {
        renditions: serde_json::json!([{ "name": "small", "width": 64, "format": "webp" }]),
        ..case("icc-bomb.png", icc_bomb_png(), Ok(()))
    });
    cases.push(case("pixel-bomb.png", header_bomb_png(100_000, 100_000), Err("TooLarge")));
    cases.push(case("frame-bomb.gif", frame_bomb_gif(), Err("TooLarge")));
    cases.push(case("not-an-image.jpg", b"<html>definitely not a photo</html>".to_vec(), Err("NotAnImage")));
    cases
}

/// The peak resident set of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).expect("kB") << 10
}

fn outcome(record: &JobRecord) -> Result<(), String> {
    match record.state {
        JobState::Success => Ok(()),
        _ => Err(record.error.as_ref().map_or_else(|| "no error".to_owned(), |e| e.code.clone())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worst_files_at_full_concurrency_end_clearly_within_the_memory_budget() {
    let mut options = test_options();
    options.worker.runner.concurrency = 0;
    options.watch_bucket = None;
    options.engine.heartbeat_timeout = Duration::from_secs(60);
    let s = TestServer::start(options).await;

    let cases = cases();
    let mut ids = Vec::new();
    for c in &cases {
        s.drop_file("original", c.key, &c.bytes);
        let body = serde_json::json!({
            "sourceBucket": "original", "sourceKey": c.key, "destinationBucket": "resized", "renditions": c.renditions,
        });
        let (status, json) = s.post_process("", &body.to_string()).await;
        assert_eq!(status, 202, "{}: {json}", c.key);
        ids.push(json["jobId"].as_str().expect("jobId").to_owned());
    }

    let started = Instant::now();
    let budget = format!("{BUDGET_MIB}MiB");
    let mut worker =
        imgpipe(s.data_dir(), &["worker", "--workers", "4"], &[("IMGPIPE_MEMORY_BUDGET", budget.as_str())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("imgpipe worker");
    let mut records = Vec::new();
    for id in &ids {
        records.push(s.wait_job(id, Duration::from_secs(240)).await);
    }
    let elapsed = started.elapsed();
    assert!(worker.try_wait().expect("status").is_none(), "the worker is still alive");
    let peak = peak_rss(worker.id());
    worker.kill().expect("stop");
    worker.wait().expect("reaped");

    println!("| file | size | outcome | attempts |\n| --- | ---: | --- | ---: |");
    for (c, r) in cases.iter().zip(&records) {
        let got = outcome(r);
        println!(
            "| {} | {} KiB | {} | {} |",
            c.key,
            c.bytes.len() >> 10,
            got.clone().err().unwrap_or("success".into()),
            r.attempts
        );
        assert_eq!(got, c.expect.map_err(String::from), "{}: {:#?}", c.key, r.history);
        assert_eq!(r.attempts, 1, "{}: each file's outcome is final at its first attempt", c.key);
        if let Err(code) = c.expect {
            let error = r.error.as_ref().expect("an error");
            assert_eq!((error.class, error.code.as_str()), (protocol::ErrorClass::Permanent, code), "{}", c.key);
            assert!(!error.message.is_empty() && !error.message.contains(s.data_dir().to_str().expect("utf-8")));
        }
    }
    let icc = records.iter().zip(&cases).find(|(_, c)| c.key == "icc-bomb.png").expect("icc").0;
    assert!(
        icc.outputs[0].size < 64 << 10,
        "the profile was not copied into the output: {} bytes",
        icc.outputs[0].size
    );
    assert!(icc.metadata.as_ref().is_some_and(|m| m.icc_dropped), "{:?}", icc.metadata);
    println!(
        "peak RSS of the worker (4 slots, {BUDGET_MIB} MiB budget): {} MiB for {} files in {elapsed:.1?}",
        peak >> 20,
        cases.len()
    );
    assert!(peak < (BUDGET_MIB + BASELINE_MIB) << 20, "peak RSS {} MiB over the budget", peak >> 20);
    s.stop().await;
}
