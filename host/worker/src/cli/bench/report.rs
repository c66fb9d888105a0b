//! The bench's report: one row per part, the setup it ran on, the table and the statistics.

use super::*;

/// One row of the report.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    /// Stable key: `load`, `memory`, `pp512`, `tg128`, `batch8`, `ttft_http`, `plugin_greedy`, ...
    pub(super) id: String,
    /// Whether the part ran.
    pub(super) ok: bool,
    /// The headline figure (absent when the part failed).
    pub(super) value: Option<f64>,
    pub(super) unit: &'static str,
    /// Every timed figure behind `value`.
    pub(super) samples: Vec<f64>,
    /// What was measured, or why it failed.
    pub(super) detail: String,
}

impl Row {
    pub(super) fn ok(
        id: impl Into<String>,
        value: f64,
        unit: &'static str,
        samples: Vec<f64>,
    ) -> Row {
        Row {
            id: id.into(),
            ok: true,
            value: Some(value),
            unit,
            samples,
            detail: String::new(),
        }
    }

    pub(super) fn failed(id: impl Into<String>, unit: &'static str, e: &anyhow::Error) -> Row {
        Row {
            id: id.into(),
            ok: false,
            value: None,
            unit,
            samples: Vec::new(),
            detail: format!("FAILED: {e:#}"),
        }
    }

    pub(super) fn with(mut self, detail: impl Into<String>) -> Row {
        if self.ok {
            self.detail = detail.into();
        }
        self
    }

    pub(super) fn result_text(&self) -> String {
        match self.value {
            Some(v) if self.unit == "s" => format!("{v:.3} s"),
            Some(v) if self.unit == "ms" => format!("{v:.1} ms"),
            Some(v) if self.unit == "us" => format!("{v:.1} µs"),
            Some(v) if self.unit == "MiB" => format!("{v:.1} MiB"),
            Some(v) => format!("{v:.1} {}", self.unit),
            None => "-".to_string(),
        }
    }
}

/// What the bench ran on.
#[derive(Debug, Serialize)]
pub(super) struct Setup {
    pub(super) model: String,
    pub(super) model_name: String,
    pub(super) architecture: String,
    pub(super) quant: String,
    pub(super) backend: &'static str,
    /// The card's or the CPU's name.
    pub(super) device: String,
    /// CUDA: the kernel driver's version and the CUDA version it supports; CPU: none.
    pub(super) driver: Option<String>,
    pub(super) sm: Option<String>,
    /// CPU: worker threads asked for (0: one per core).
    pub(super) threads: Option<usize>,
    pub(super) repeats: usize,
    pub(super) seed: u64,
    /// The host's 1/5/15-minute load averages when the bench started (other work skews CPU
    /// figures; a GPU bench is skewed less).
    pub(super) load_average: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) setup: Setup,
    pub(super) rows: Vec<Row>,
}

pub(super) fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// The value at fraction `q` of the sorted samples (the upper middle for an even count at 0.5).
pub(super) fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 * q) as usize).min(s.len() - 1);
    s[i]
}

pub(super) fn line(r: &Row) -> String {
    format!("{}: {} {}", r.id, r.result_text(), r.detail)
}

/// The report as a Markdown table.
pub(super) fn render(r: &Report) -> String {
    let s = &r.setup;
    let mut out = format!(
        "model: {} ({}, {}, {})\nbackend: {}  device: {}",
        s.model_name, s.architecture, s.quant, s.model, s.backend, s.device
    );
    if let Some(d) = &s.driver {
        out.push_str(&format!("  driver {d}"));
    }
    if let Some(sm) = &s.sm {
        out.push_str(&format!("  sm {sm}"));
    }
    if let Some(t) = s.threads {
        out.push_str(&format!("  --threads {t}"));
    }
    out.push_str(&format!("  repeats {}  seed {}", s.repeats, s.seed));
    if let Some(l) = &s.load_average {
        out.push_str(&format!("  load average at start {l}"));
    }
    out.push_str("\n\n");
    let cells: Vec<[String; 3]> = r
        .rows
        .iter()
        .map(|row| [row.id.clone(), row.result_text(), row.detail.clone()])
        .collect();
    let w0 = cells.iter().map(|c| c[0].len()).max().unwrap_or(0).max(4);
    let w1 = cells
        .iter()
        .map(|c| c[1].chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    out.push_str(&format!(
        "| {:<w0$} | {:<w1$} | detail |\n",
        "test", "result"
    ));
    out.push_str(&format!(
        "|{}|{}|---|\n",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2)
    ));
    for c in cells {
        out.push_str(&format!("| {:<w0$} | {:<w1$} | {} |\n", c[0], c[1], c[2]));
    }
    out
}
