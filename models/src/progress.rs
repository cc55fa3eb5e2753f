//! Telling the user what model installation is doing: a progress bar per
//! download on a terminal (bytes, rate, time left), plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Where messages and progress go (standard error).
#[derive(Debug)]
pub struct Reporter {
    terminal: bool,
    quiet: bool,
}

impl Reporter {
    /// Bars when standard error is a terminal and not `quiet`; plain lines
    /// otherwise; nothing but warnings when `quiet`.
    pub fn new(quiet: bool) -> Reporter {
        Reporter {
            terminal: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// A line for the user.
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln_safe(msg);
        }
    }

    /// A line that is said even when quiet (what could not be done).
    pub fn warn(&self, msg: &str) {
        eprintln_safe(msg);
    }

    /// Progress of one download of `total` bytes (when known), starting at
    /// `start` (a resumed download).
    pub fn download(&self, label: &str, total: Option<u64>, start: u64) -> Download {
        let bar = (self.terminal && !self.quiet).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::no_length(),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar.set_position(start);
            bar.reset_eta();
            bar
        });
        if bar.is_none() && !self.quiet {
            let size = total.map(mb).unwrap_or_else(|| "unknown size".into());
            let resumed = if start > 0 {
                format!(", resuming at {}", mb(start))
            } else {
                String::new()
            };
            eprintln_safe(&format!("downloading {label} ({size}{resumed})"));
        }
        Download {
            bar,
            plain: Mutex::new(Plain {
                label: label.to_string(),
                total,
                start,
                next_quarter: 1,
                started: Instant::now(),
            }),
            quiet: self.quiet,
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Writes a line to standard error, ignoring a closed stream.
fn eprintln_safe(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

struct Plain {
    label: String,
    total: Option<u64>,
    start: u64,
    next_quarter: u64,
    started: Instant,
}

/// One download's progress.
pub struct Download {
    bar: Option<ProgressBar>,
    plain: Mutex<Plain>,
    quiet: bool,
}

impl Download {
    /// `pos` bytes are now on disk.
    pub fn set(&self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            return;
        }
        if self.quiet {
            return;
        }
        let mut p = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        // Small files get their start line only.
        if let Some(total) = p.total.filter(|t| *t >= 4 << 20) {
            if p.next_quarter < 4 && pos * 4 >= total * p.next_quarter {
                while p.next_quarter < 3 && pos * 4 >= total * (p.next_quarter + 1) {
                    p.next_quarter += 1;
                }
                let rate = (pos - p.start.min(pos)) as f64 / p.started.elapsed().as_secs_f64().max(1e-3);
                eprintln_safe(&format!(
                    "  {}: {}% ({} of {}, {:.1} MB/s)",
                    p.label,
                    p.next_quarter * 25,
                    mb(pos),
                    mb(total),
                    rate / 1e6
                ));
                p.next_quarter += 1;
            }
        }
    }

    /// The download ended (well or not).
    pub fn finish(&self, ok: bool) {
        if let Some(bar) = &self.bar {
            if ok {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}
