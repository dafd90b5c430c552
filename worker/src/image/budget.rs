//! The memory budget the renders of one process share. Each render estimates its peak from
//! the header and its renditions' plans ([`peak_estimate`]), before any pixel buffer exists,
//! and reserves that much: a job that alone would exceed the budget is refused (a permanent
//! `TooLarge`), and the others wait their turn in arrival order. So N workers each given a
//! worst-case image fit the machine together instead of multiplying the worst case by N.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use protocol::Rendition;
use protocol::rendition::Format;

use super::decode::Probe;
use super::detect::SourceFormat;
use super::error::ImageError;
use super::geometry::{self, Plan};

/// A budget of bytes shared by every render that holds a clone of it.
#[derive(Clone, Default)]
pub struct MemoryBudget {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    total: u64,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    used: u64,
    next_ticket: u64,
    /// Tickets of the reservations waiting, oldest first: only the oldest may take bytes.
    waiting: VecDeque<u64>,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shared {
            None => f.write_str("MemoryBudget(unlimited)"),
            Some(s) => write!(f, "MemoryBudget({} of {} bytes in use)", s.lock().used, s.total),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryBudget {
    /// No budget: every reservation passes at once.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self { shared: Some(Arc::new(Shared { total, state: Mutex::default(), changed: Condvar::new() })) }
    }

    /// The budget's size; `None` when unlimited.
    pub fn total(&self) -> Option<u64> {
        self.shared.as_ref().map(|s| s.total)
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.lock().used)
    }

    /// Reserves `bytes`, blocking the calling thread while earlier reservations wait or the
    /// budget lacks room; the bytes return when the [`Reservation`] drops.
    ///
    /// # Errors
    /// [`ImageError::TooLarge`] when `bytes` exceeds the whole budget: waiting cannot help.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, ImageError> {
        let Some(shared) = &self.shared else { return Ok(Reservation { shared: None, bytes }) };
        if bytes > shared.total {
            return Err(ImageError::TooLarge { what: "estimated memory (bytes)", actual: bytes, limit: shared.total });
        }
        let mut state = shared.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(ticket);
        while state.waiting.front() != Some(&ticket) || state.used + bytes > shared.total {
            state = shared.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting.pop_front();
        state.used += bytes;
        drop(state);
        // The next in line may fit beside this one.
        shared.changed.notify_all();
        Ok(Reservation { shared: Some(Arc::clone(shared)), bytes })
    }
}

/// Bytes held from a [`MemoryBudget`] until dropped.
#[derive(Debug)]
pub struct Reservation {
    shared: Option<Arc<Shared>>,
    bytes: u64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.total)
    }
}

impl Reservation {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.lock().used -= self.bytes;
            shared.changed.notify_all();
        }
    }
}

/// The memory this process may use: the cgroup's limit (a container's `--memory`, a Kubernetes
/// limit), a Lambda function's memory size, or the machine's RAM, whichever is known and least.
pub fn available_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let lambda =
        std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok().and_then(|mb| mb.parse::<u64>().ok()).map(|mb| mb << 20);
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib << 10)
    });
    [cgroup, lambda, ram].into_iter().flatten().min()
}

/// An upper estimate of the heap a render holds at its peak, from what the header declares
/// and the renditions' plans: the encoded input, the decoded pixels (at the decoder's scale,
/// plus the decoder's own whole-image buffers), then for the largest rendition its resized,
/// oriented and encoding copies, and every encoded output kept until the job writes them.
pub fn peak_estimate(input_len: usize, probe: &Probe, renditions: &[Rendition], plans: &[Plan]) -> u64 {
    let (w, h) = (u64::from(probe.width), u64::from(probe.height));
    let scaled = |shrink: u32| {
        let s = u64::from(shrink.max(1));
        w.div_ceil(s) * h.div_ceil(s)
    };
    let decoded = match probe.format {
        SourceFormat::Jpeg => {
            // libjpeg-turbo keeps a progressive file's DCT coefficients for the whole image at
            // full size (2 bytes each, up to 3 full-resolution components).
            let coefficients = if probe.progressive == Some(true) { w * h * 6 } else { 0 };
            scaled(geometry::dct_shrink(plans)) * 4 + coefficients
        }
        // Still WebP decodes scaled through libwebp; an animation's canvas is composed whole.
        SourceFormat::Webp => scaled(geometry::any_shrink(plans)) * 4 + w * h * 4,
        // The `image` decoders: samples as stored (16-bit at most 8 bytes a pixel), then the
        // engine's 8-bit copy; a GIF frame's buffer besides its canvas.
        SourceFormat::Png | SourceFormat::Tiff | SourceFormat::Bmp | SourceFormat::Gif => w * h * (8 + 4 + 4),
        // libheif: the coded planes (4:4:4 at up to 16 bits, 6 bytes a pixel, at the coded
        // size, which a crop may make larger than the image), its interleaved 8-bit RGB(A),
        // then the engine's copy.
        SourceFormat::Heif | SourceFormat::Avif => probe.coded_pixels.unwrap_or(0).max(w * h) * 6 + w * h * (4 + 4),
    };
    let alpha = if probe.has_alpha { 2 } else { 1 };
    let per_rendition = |r: &Rendition, p: &Plan| {
        let out = u64::from(p.out_w) * u64::from(p.out_h);
        let encoder = match r.format {
            // rav1e's reference frames and planes.
            Format::Avif => out * 16,
            _ => out * 4,
        };
        // Resized (premultiplied when there is alpha), oriented, then encoded.
        out * 4 * alpha + out * 4 + encoder
    };
    let largest = renditions.iter().zip(plans).map(|(r, p)| per_rendition(r, p)).max().unwrap_or(0);
    let kept: u64 = renditions
        .iter()
        .zip(plans)
        .map(|(r, p)| u64::from(p.out_w) * u64::from(p.out_h) * if r.format == Format::Png { 5 } else { 2 })
        .sum();
    input_len as u64 + decoded + largest + kept + BASELINE
}

/// What a render holds whatever the image: codec tables, scratch, the resizer's state.
const BASELINE: u64 = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn a_job_larger_than_the_whole_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(100);
        let err = budget.reserve(101).expect_err("refused");
        assert!(
            matches!(err, ImageError::TooLarge { what: "estimated memory (bytes)", actual: 101, limit: 100 }),
            "{err}"
        );
        assert_eq!(budget.in_use(), 0);
        assert_eq!(MemoryBudget::unlimited().reserve(u64::MAX).expect("unlimited").bytes(), u64::MAX);
    }

    #[test]
    fn reservations_wait_for_room_and_return_their_bytes() {
        let budget = MemoryBudget::new(100);
        let first = budget.reserve(70).expect("fits");
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (budget, peak) = (budget.clone(), Arc::clone(&peak));
                std::thread::spawn(move || {
                    let held = budget.reserve(40).expect("fits alone");
                    peak.fetch_max(budget.in_use(), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    drop(held);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(budget.in_use(), 70, "none of the 40s fit beside the 70");
        drop(first);
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(budget.in_use(), 0);
        assert_eq!(peak.load(Ordering::SeqCst), 80, "two 40s at a time, never three");
    }

    #[test]
    fn a_large_reservation_is_not_overtaken_by_small_ones() {
        let budget = MemoryBudget::new(100);
        let small = budget.reserve(30).expect("fits");
        let large = std::thread::spawn({
            let budget = budget.clone();
            move || budget.reserve(90).map(|r| r.bytes())
        });
        std::thread::sleep(Duration::from_millis(50));
        // Room for a 10 now, but the 90 came first.
        let late = std::thread::spawn({
            let budget = budget.clone();
            move || {
                let r = budget.reserve(10).expect("fits");
                budget.in_use() - r.bytes()
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(budget.in_use(), 30, "the 10 waits behind the 90");
        drop(small);
        assert_eq!(large.join().expect("thread").expect("fits"), 90);
        let beside = late.join().expect("thread");
        assert!(beside == 0 || beside == 90, "the 10 ran after the 90 had its turn: {beside}");
    }
}

#[cfg(test)]
mod estimate_tests {
    use super::*;

    fn heif_probe(width: u32, height: u32, coded_pixels: Option<u64>) -> Probe {
        Probe {
            format: SourceFormat::Heif,
            width,
            height,
            orientation: 1,
            icc: None,
            icc_dropped: false,
            exif: None,
            has_xmp: false,
            xmp_gps: false,
            color_space: "rgb",
            bit_depth: 8,
            has_alpha: false,
            progressive: None,
            coded_pixels,
        }
    }

    #[test]
    fn a_cropped_heif_reserves_for_its_coded_size() {
        let renditions = [Rendition::thumbnail()];
        let estimate = |probe: &Probe| {
            let plans: Vec<Plan> =
                renditions.iter().map(|r| geometry::plan(r, probe.width, probe.height, 1).expect("plans")).collect();
            peak_estimate(0, probe, &renditions, &plans)
        };
        let uncropped = estimate(&heif_probe(1000, 1000, Some(1_000_000)));
        // A `clap` crop showing 1000×1000 of an 8000×8000 coded image: the decoder still
        // makes 64 MP of planes, 6 bytes a pixel.
        let cropped = estimate(&heif_probe(1000, 1000, Some(64_000_000)));
        assert_eq!(cropped - uncropped, 63_000_000 * 6);
        // Without a coded size (or a smaller one) the shown size counts.
        assert_eq!(estimate(&heif_probe(1000, 1000, None)), uncropped);
        assert_eq!(estimate(&heif_probe(1000, 1000, Some(10))), uncropped);
    }
}
