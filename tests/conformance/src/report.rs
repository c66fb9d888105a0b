//! A conformance report: one row per check, printed as a pass/fail table.

use std::fmt;

/// One check and its verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was observed (a measurement, the failing input, the error).
    pub detail: String,
}

/// The checks run against one plugin.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// `name@version (kind)` of the plugin checked.
    pub plugin: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(plugin: impl Into<String>) -> Self {
        Report {
            plugin: plugin.into(),
            checks: Vec::new(),
        }
    }

    /// Record a check.
    pub fn add(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// Record a check from a result: `Ok(detail)` passes, `Err(detail)` fails.
    pub fn record(&mut self, name: impl Into<String>, result: Result<String, String>) {
        match result {
            Ok(d) => self.add(name, true, d),
            Err(d) => self.add(name, false, d),
        }
    }

    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Width of the detail column before a line is wrapped (long panic messages stay whole, on
/// more lines).
const DETAIL_WIDTH: usize = 100;

/// `detail` as table lines: split at its own newlines, each wrapped at [`DETAIL_WIDTH`]
/// characters, at a space where there is one (nothing is left out).
fn detail_lines(detail: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for line in detail.lines() {
        let chars: Vec<char> = line.trim_end().chars().collect();
        if chars.is_empty() {
            continue;
        }
        // Break at the last space within the width; a longer word is cut.
        let mut rest: &[char] = &chars;
        while rest.len() > DETAIL_WIDTH {
            let cut = rest[..=DETAIL_WIDTH]
                .iter()
                .rposition(|&c| c == ' ')
                .filter(|&i| i > 0)
                .unwrap_or(DETAIL_WIDTH);
            lines.push(rest[..cut].iter().collect());
            rest = &rest[cut..];
            while rest.first() == Some(&' ') {
                rest = &rest[1..];
            }
        }
        if !rest.is_empty() {
            lines.push(rest.iter().collect());
        }
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        writeln!(f, "plugin: {}", self.plugin)?;
        writeln!(f, "{:<4}  {:<width$}  detail", "", "check")?;
        for c in &self.checks {
            let verdict = if c.passed { "PASS" } else { "FAIL" };
            let lines = detail_lines(&c.detail);
            writeln!(f, "{verdict}  {:<width$}  {}", c.name, lines[0])?;
            for more in &lines[1..] {
                writeln!(f, "{:<4}  {:<width$}  {more}", "", "")?;
            }
        }
        let failed = self.failures().count();
        write!(
            f,
            "{} checks, {} passed, {failed} failed",
            self.checks.len(),
            self.checks.len() - failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_fails_the_report() {
        let mut r = Report::new("x@1 (sampler)");
        assert!(!r.passed(), "an empty report proves nothing");
        r.add("a", true, "ok");
        assert!(r.passed());
        r.record("b", Err("bad".into()));
        assert!(!r.passed());
        let table = r.to_string();
        assert!(table.contains("FAIL  b"));
        assert!(table.ends_with("2 checks, 1 passed, 1 failed"));
    }

    #[test]
    fn long_and_multi_line_details_stay_in_the_detail_column() {
        let mut r = Report::new("x@1 (sampler)");
        let panic = format!(
            "trapped: panicked at src/lib.rs:3:5:\n{}END",
            "x".repeat(250)
        );
        r.add("panics", false, panic);
        r.add("next", true, "ok");
        let table = r.to_string();
        let lines: Vec<&str> = table.lines().collect();
        // header, 1 + 1 + 3 detail lines (250 + 3 chars at 100 a line), the next row, totals
        assert_eq!(lines.len(), 1 + 1 + 4 + 1 + 1, "{table}");
        assert!(lines[2].starts_with("FAIL  panics  trapped: panicked"));
        for cont in &lines[3..6] {
            assert!(cont.starts_with("              "), "{cont:?}");
        }
        assert!(
            lines[5].trim_end().ends_with("END"),
            "the message is never cut"
        );
        assert!(lines[6].starts_with("PASS  next    ok"));
    }
}
