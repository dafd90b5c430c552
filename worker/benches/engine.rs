//! Micro-benchmarks of the engine's hot steps: JPEG shrink-on-load decode + Lanczos3 + encode
//! at the three benchmark sizes, PNG and WebP sources, HEIC and AVIF (the 640×480 test
//! fixtures, through libheif), orientation and flattening.
//! Run: `cargo bench -p worker --bench engine`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use image::{ImageBuffer, ImageFormat, Rgb, Rgba};
use protocol::rendition::{Fit, Format, Rendition};
use worker::image::pixels::Pixels;
use worker::image::{Limits, render};

const SIDE: u32 = 2048;

/// A smooth but detailed test picture, so encoders and resamplers do representative work.
fn picture() -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(SIDE, SIDE * 3 / 4, |x, y| {
        let v = ((x ^ y) & 0xFF) as u8;
        Rgb([v, (x / 8) as u8, (y / 6) as u8])
    })
}

fn jpeg_source() -> Vec<u8> {
    let img = picture();
    let image = turbojpeg::Image {
        pixels: img.as_raw().as_slice(),
        width: img.width() as usize,
        pitch: img.width() as usize * 3,
        height: img.height() as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, 90, turbojpeg::Subsamp::Sub2x2).expect("encodes").to_vec()
}

fn encoded(format: ImageFormat, rgba: bool) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    if rgba {
        let img = picture();
        let with_alpha = ImageBuffer::from_fn(img.width(), img.height(), |x, y| {
            let p = img.get_pixel(x, y).0;
            Rgba([p[0], p[1], p[2], (x % 256) as u8])
        });
        with_alpha.write_to(&mut out, format).expect("encodes");
    } else {
        picture().write_to(&mut out, format).expect("encodes");
    }
    out.into_inner()
}

fn box_of(side: u32) -> Rendition {
    Rendition {
        name: "b".into(),
        width: Some(side),
        height: Some(side),
        fit: Fit::Inside,
        format: Format::Jpeg,
        quality: 80,
        enlarge: false,
        animated: false,
    }
}

fn bench_render(c: &mut Criterion) {
    let limits = Limits::default();
    let jpeg = jpeg_source();
    let mut group = c.benchmark_group("render_jpeg_2048x1536");
    for side in [128, 512, 1600] {
        let r = [box_of(side)];
        group.bench_function(format!("{side}px"), |b| {
            b.iter(|| render(black_box(&jpeg), &r, &limits).expect("renders"))
        });
    }
    group.finish();
    let png = encoded(ImageFormat::Png, true);
    let webp = encoded(ImageFormat::WebP, false);
    let r = [box_of(512)];
    c.bench_function("render_png_rgba_2048x1536_512px", |b| {
        b.iter(|| render(black_box(&png), &r, &limits).expect("renders"))
    });
    c.bench_function("render_webp_lossless_2048x1536_512px", |b| {
        b.iter(|| render(black_box(&webp), &r, &limits).expect("renders"))
    });
    let three =
        [box_of(128), Rendition { name: "m".into(), ..box_of(512) }, Rendition { name: "l".into(), ..box_of(1600) }];
    c.bench_function("render_jpeg_three_renditions", |b| {
        b.iter(|| render(black_box(&jpeg), &three, &limits).expect("renders"))
    });
    #[cfg(feature = "heif")]
    for name in ["photo.heic", "photo_grid.heic", "photo.avif"] {
        let input = std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
        let r = [box_of(512)];
        c.bench_function(&format!("render_{}_640x480_512px", name.replace('.', "_")), |b| {
            b.iter(|| render(black_box(&input), &r, &limits).expect("renders"))
        });
    }
}

fn bench_pixels(c: &mut Criterion) {
    let px = Pixels { data: vec![128; 512 * 384 * 4], width: 512, height: 384, channels: 4 };
    c.bench_function("orient_6_512x384_rgba", |b| b.iter(|| black_box(px.clone()).orient(6)));
    c.bench_function("flatten_512x384_rgba", |b| b.iter(|| black_box(px.clone()).flatten_on_white()));
}

criterion_group!(benches, bench_render, bench_pixels);
criterion_main!(benches);
