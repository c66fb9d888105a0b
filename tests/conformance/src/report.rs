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

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        writeln!(f, "plugin: {}", self.plugin)?;
        writeln!(f, "{:<4}  {:<width$}  detail", "", "check")?;
        for c in &self.checks {
            let verdict = if c.passed { "PASS" } else { "FAIL" };
            let detail: String = c.detail.chars().take(160).collect();
            writeln!(f, "{verdict}  {:<width$}  {detail}", c.name)?;
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
}
