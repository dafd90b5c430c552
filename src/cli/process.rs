//! `imgpipe process INPUT... --out DIR`: runs the image engine on local files, with no queue,
//! for users and for benchmarks. One bad file is reported and skipped; the exit code says
//! whether any failed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use protocol::metadata::MetadataPolicy;
use protocol::rendition::{Fit, Format, Rendition};
use worker::image::{Limits, MemoryBudget, render_within};

use super::progress::{Progress, ProgressMode, summary};

/// How the image fits the box (see `Fit`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FitArg {
    /// Fit inside the box, keeping the aspect ratio.
    Inside,
    /// Cover the box, cropping the overflow around the centre.
    Cover,
    /// Stretch to exactly the box.
    Fill,
}

/// Output encoding (see `Format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    /// JPEG, 4:2:0.
    Jpeg,
    /// PNG.
    Png,
    /// Lossy WebP.
    Webp,
    /// AVIF (not available in this build).
    Avif,
}

/// Arguments of `imgpipe process`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// Image files to process (format detected from content).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Folder for the outputs, created if missing; files are named `<stem>_<name>.<ext>`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Box width in pixels (default 512 when neither width nor height is given).
    #[arg(long)]
    pub width: Option<u32>,
    /// Box height in pixels (default 512 when neither width nor height is given).
    #[arg(long)]
    pub height: Option<u32>,
    /// How the image fits the box.
    #[arg(long, value_enum, default_value_t = FitArg::Inside)]
    pub fit: FitArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Jpeg)]
    pub format: FormatArg,
    /// Encoder quality, 1-100.
    #[arg(long, default_value_t = 80)]
    pub quality: u8,
    /// Rendition name, used in output file names.
    #[arg(long, default_value = "thumbnail")]
    pub name: String,
    /// Allow scaling up images smaller than the box.
    #[arg(long)]
    pub enlarge: bool,
    /// Refuse images with more pixels than this.
    #[arg(long, default_value_t = Limits::default().max_pixels)]
    pub max_pixels: u64,
    /// Refuse images wider or taller than this.
    #[arg(long, default_value_t = Limits::default().max_dimension)]
    pub max_dimension: u32,
    /// Refuse input files larger than this many bytes.
    #[arg(long, default_value_t = Limits::default().max_input_bytes)]
    pub max_input_bytes: u64,
    /// Also write `<stem>_metadata.json` with the source's metadata.
    #[arg(long)]
    pub metadata: bool,
    /// Source metadata the outputs keep, comma-separated: any of `copyright`, `artist`,
    /// `captureTime`, `icc` (default: none; a colour profile is converted away, the pixels
    /// written as sRGB). Location is never kept.
    #[arg(long, value_name = "LIST", value_parser = parse_keep)]
    pub keep: Option<MetadataPolicy>,
    /// Print nothing for files that succeed, and no progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// How progress is shown on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

impl ProcessArgs {
    fn rendition(&self) -> Rendition {
        let (width, height) = match (self.width, self.height) {
            (None, None) => (Some(512), Some(512)),
            other => other,
        };
        let fit = match self.fit {
            FitArg::Inside => Fit::Inside,
            FitArg::Cover => Fit::Cover,
            FitArg::Fill => Fit::Fill,
        };
        let format = match self.format {
            FormatArg::Jpeg => Format::Jpeg,
            FormatArg::Png => Format::Png,
            FormatArg::Webp => Format::Webp,
            FormatArg::Avif => Format::Avif,
        };
        Rendition {
            name: self.name.clone(),
            width,
            height,
            fit,
            format,
            quality: self.quality,
            enlarge: self.enlarge,
            animated: false,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_input_bytes: self.max_input_bytes,
            max_pixels: self.max_pixels,
            max_dimension: self.max_dimension,
            ..Limits::default()
        }
    }
}

fn parse_keep(list: &str) -> Result<MetadataPolicy, String> {
    format!("keep:{list}").parse()
}

fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

/// Processes one file; errors carry the reason, the caller adds the path.
fn process_one(input: &Path, args: &ProcessArgs, r: &Rendition, limits: &Limits) -> anyhow::Result<()> {
    let bytes = std::fs::read(input).context("cannot read the file")?;
    let policy = args.keep.clone().unwrap_or_default();
    let rendered = render_within(&bytes, std::slice::from_ref(r), &policy, limits, &MemoryBudget::unlimited())?;
    let stem = stem(input);
    for out in &rendered.outputs {
        let path = args.out.join(format!("{stem}_{}.{}", out.rendition, r.format.extension()));
        std::fs::write(&path, &out.bytes).with_context(|| format!("cannot write {}", path.display()))?;
        if !args.quiet {
            println!(
                "{} -> {} ({}x{}, {} bytes)",
                input.display(),
                path.display(),
                out.width,
                out.height,
                out.bytes.len()
            );
        }
    }
    if args.metadata {
        let path = args.out.join(format!("{stem}_metadata.json"));
        let json = serde_json::to_vec_pretty(&rendered.metadata)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs `imgpipe process`.
///
/// # Errors
/// An invalid rendition or an output folder that cannot be created stops at once; otherwise
/// each failing input is reported on stderr, the others still run, and the error counts them.
pub fn run(args: ProcessArgs) -> anyhow::Result<()> {
    let rendition = args.rendition();
    if let Err(reason) = rendition.validate() {
        bail!("{reason}");
    }
    let limits = args.limits();
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mode = if args.quiet { ProgressMode::None } else { args.progress };
    let mut progress = Progress::new("processed", args.inputs.len() as u64, mode);
    let mut failed = 0usize;
    for input in &args.inputs {
        let result = process_one(input, &args, &rendition, &limits);
        if let Err(e) = &result {
            failed += 1;
            progress.println(&format!("imgpipe: {}: {e:#}", input.display()));
        }
        progress.tick(result.is_err());
    }
    let row = progress.finish();
    if mode != ProgressMode::None {
        eprint!("{}", summary(&[row]));
    }
    if failed > 0 {
        bail!("{failed} of {} inputs failed", args.inputs.len());
    }
    Ok(())
}
