//! Progress of long commands (`submit`, `process`) on stderr: a bar on a terminal, a plain
//! line a second otherwise (logs, CI), or nothing; then a summary table.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// A bar, redrawn in place.
    Bar,
    /// One line a second: done, rate, time left, failures.
    Plain,
    /// Nothing but the summary.
    None,
}

/// Counts one stage of work (`submitted`, `processed`) and shows it as it goes.
pub struct Progress {
    stage: &'static str,
    total: u64,
    done: u64,
    failed: u64,
    started: Instant,
    last_line: Option<Instant>,
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

/// How often a plain line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

impl Progress {
    /// Starts counting `total` items of `stage`.
    pub fn new(stage: &'static str, total: u64, mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        };
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(stage);
            bar
        });
        Self {
            stage,
            total,
            done: 0,
            failed: 0,
            started: Instant::now(),
            last_line: None,
            bar,
            plain: mode == ProgressMode::Plain,
        }
    }

    /// One item done, failed or not.
    pub fn tick(&mut self, failed: bool) {
        self.done += 1;
        self.failed += u64::from(failed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if self.failed > 0 {
                bar.set_message(format!("{} failed", self.failed));
            }
        } else if self.plain && (self.done == self.total || self.last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY)) {
            self.last_line = Some(Instant::now());
            eprintln!("{}", self.line());
        }
    }

    /// Prints a message without breaking the bar.
    pub fn println(&self, message: &str) {
        match &self.bar {
            // A hidden bar (stderr is no terminal) would swallow the line.
            Some(bar) if !bar.is_hidden() => bar.println(message),
            _ => eprintln!("{message}"),
        }
    }

    /// `submitted 40/200 (35.2/s, eta 5s), 1 failed`
    fn line(&self) -> String {
        let rate = self.rate();
        let left = self.total.saturating_sub(self.done);
        let eta = if rate > 0.0 { format!("{:.0}s", left as f64 / rate) } else { "?".into() };
        format!("{} {}/{} ({rate:.1}/s, eta {eta}), {} failed", self.stage, self.done, self.total, self.failed)
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 { self.done as f64 / secs } else { 0.0 }
    }

    /// Stops the bar and returns the stage's row for [`summary`].
    pub fn finish(self) -> Row {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        Row {
            stage: self.stage,
            total: self.total,
            ok: self.done - self.failed,
            failed: self.failed,
            elapsed: self.started.elapsed(),
        }
    }
}

/// One stage's totals.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    stage: &'static str,
    total: u64,
    ok: u64,
    failed: u64,
    elapsed: Duration,
}

/// The summary table, for stderr.
pub fn summary(rows: &[Row]) -> String {
    let mut out = format!("{:<10} {:>7} {:>7} {:>7} {:>9} {:>9}\n", "", "files", "ok", "failed", "elapsed", "rate");
    for r in rows {
        let secs = r.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { (r.ok + r.failed) as f64 / secs } else { 0.0 };
        out.push_str(&format!(
            "{:<10} {:>7} {:>7} {:>7} {:>8.1}s {:>7.1}/s\n",
            r.stage, r.total, r.ok, r.failed, secs, rate
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_and_the_summary_count_what_happened() {
        let mut p = Progress::new("submitted", 3, ProgressMode::None);
        p.tick(false);
        p.tick(true);
        assert!(p.line().starts_with("submitted 2/3 ("), "{}", p.line());
        assert!(p.line().ends_with("1 failed"), "{}", p.line());
        p.tick(false);
        let table = summary(&[p.finish()]);
        let row = table.lines().nth(1).expect("a row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..4], ["submitted", "3", "2", "1"], "{table}");
    }
}
