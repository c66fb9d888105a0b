//! Progress a person can see on the long waits (`synth`, `bench`): an `indicatif` bar when
//! stderr is a terminal, plain lines at every quarter otherwise (logs, CI), so a redirected run
//! still shows that it moves without filling the log with redraws.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// What the counts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Steps of a named kind (`tensors`, `runs`).
    Steps(&'static str),
}

/// One task's progress, `0..=total`.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    unit: Unit,
    bar: Option<ProgressBar>,
    /// Next percentage (0, 25, 50, 75, 100) a plain line is printed at.
    next_line: u64,
    /// Whether plain lines are printed without a terminal (off where the caller prints its
    /// own line per step).
    plain_lines: bool,
    started: Instant,
}

impl Progress {
    /// Start a task of `total` units; on a terminal a bar is drawn on stderr.
    pub fn new(label: impl Into<String>, total: u64, unit: Unit) -> Progress {
        Progress::with_terminal(label, total, unit, std::io::stderr().is_terminal(), true)
    }

    /// A bar on a terminal and nothing otherwise, for a caller that prints a line of its own
    /// after every step ([`Progress::println`]).
    pub fn terminal_only(label: impl Into<String>, total: u64, unit: Unit) -> Progress {
        Progress::with_terminal(label, total, unit, std::io::stderr().is_terminal(), false)
    }

    fn with_terminal(
        label: impl Into<String>,
        total: u64,
        unit: Unit,
        tty: bool,
        plain_lines: bool,
    ) -> Progress {
        let label = label.into();
        let bar = tty.then(|| {
            let template = match unit {
                Unit::Bytes => {
                    "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}"
                }
                Unit::Steps(_) => "{msg} [{bar:30}] {pos}/{len} {elapsed}",
            };
            let bar = ProgressBar::new(total).with_message(label.clone());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let mut p = Progress {
            label,
            total,
            done: 0,
            unit,
            bar,
            next_line: 0,
            plain_lines,
            started: Instant::now(),
        };
        p.report();
        p
    }

    /// `n` more units done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done.saturating_add(n));
    }

    /// `done` units done in all.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total);
        self.report();
    }

    /// Print `text` on stderr (above the bar on a terminal).
    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// One step done, and its line printed.
    pub fn step(&mut self, text: &str) {
        self.println(text);
        self.inc(1);
    }

    /// Change what the bar says (e.g. the part of a benchmark running now).
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
        if let Some(bar) = &self.bar {
            bar.set_message(self.label.clone());
        }
    }

    /// The lines printed without a terminal so far would be these percentages.
    fn percent(&self) -> u64 {
        (self.done * 100).checked_div(self.total).unwrap_or(100)
    }

    fn report(&mut self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            return;
        }
        let pct = self.percent();
        if !self.plain_lines || pct < self.next_line {
            return;
        }
        let amount = match self.unit {
            Unit::Bytes => format!(
                "{:.2} / {:.2} GB",
                self.done as f64 / 1e9,
                self.total as f64 / 1e9
            ),
            Unit::Steps(what) => format!("{} / {} {what}", self.done, self.total),
        };
        eprintln!(
            "{}: {pct:>3} % ({amount}, {:.1} s)",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        self.next_line = (pct / 25 + 1) * 25;
    }

    /// The task is over; the bar is cleared (the caller prints the outcome).
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_at_each_quarter_once() {
        let mut p = Progress::with_terminal("t", 8, Unit::Steps("steps"), false, true);
        let mut seen = vec![p.next_line];
        for _ in 0..8 {
            p.inc(1);
            if seen.last() != Some(&p.next_line) {
                seen.push(p.next_line);
            }
        }
        // Lines at 0, 25, 50, 75 and 100 %: the next threshold moved past each once.
        assert_eq!(seen, vec![25, 50, 75, 100, 125]);
        p.finish();
    }
}
