//! `loadgen compare`: runs side by side, with ratios against the first, and
//! a percentile-distribution plot ([`crate::plot`]).

use std::fs;
use std::path::Path;

pub use crate::plot::plot;
use crate::report::{self, files, Hgrm, Summary};

/// One run to compare: a run directory or a bare `.hgrm` file.
#[derive(Debug, Clone)]
pub struct Run {
    /// Label in the table and legend.
    pub name: String,
    /// The latency distribution (us).
    pub hgrm: Hgrm,
    /// The summary, when the run has one.
    pub summary: Option<Summary>,
}

impl Run {
    /// Loads `path`: a directory with `latency.hgrm` (and `summary.json`), or an `.hgrm` file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let (hgrm_path, summary) = if path.is_dir() {
            (path.join(files::LATENCY_HGRM), report::read_summary(path).ok())
        } else {
            (path.to_path_buf(), None)
        };
        let text = fs::read_to_string(&hgrm_path).map_err(|e| format!("{}: {e}", hgrm_path.display()))?;
        let hgrm = Hgrm::parse(&text).map_err(|e| format!("{}: {e}", hgrm_path.display()))?;
        let name = summary.as_ref().map(|s| s.run.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| {
            let p = if path.is_dir() { path.to_path_buf() } else { path.with_extension("") };
            p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
        });
        Ok(Self { name, hgrm, summary })
    }
}

/// Percentile columns of the table.
pub const COLUMNS: [(&str, f64); 6] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999), ("max", 1.0)];

fn value(run: &Run, q: f64) -> f64 {
    // The summary holds exact percentiles; bare .hgrm files give bucket values.
    if let Some(s) = &run.summary {
        let exact = [(0.5, s.p50_us), (0.9, s.p90_us), (0.99, s.p99_us), (0.999, s.p99_9_us), (0.9999, s.p99_99_us)];
        if let Some(&(_, v)) = exact.iter().find(|(k, _)| *k == q) {
            return v;
        }
        if q >= 1.0 {
            return s.max_us;
        }
    }
    run.hgrm.value_at(q)
}

/// Formats microseconds compactly.
pub fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} us")
    } else {
        format!("{us:.1} us")
    }
}

/// Formats a rate compactly.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

/// The side-by-side table (Markdown), each cell with its ratio to the first run.
pub fn table(runs: &[Run]) -> String {
    let mut header = vec!["run".to_string(), "calls/s".to_string()];
    header.extend(COLUMNS.iter().map(|(n, _)| n.to_string()));
    header.push("server CPU/call".into());
    let mut rows = vec![header];
    let base = runs.first();
    for run in runs {
        let mut row = vec![run.name.clone()];
        let rate = run.summary.as_ref().map(|s| s.achieved_rate);
        let base_rate = base.and_then(|b| b.summary.as_ref()).map(|s| s.achieved_rate);
        row.push(match (rate, base_rate) {
            (Some(r), Some(b)) if b > 0.0 => format!("{} ({:.2}x)", fmt_rate(r), r / b),
            (Some(r), _) => fmt_rate(r),
            _ => "-".into(),
        });
        for (_, q) in COLUMNS {
            let v = value(run, q);
            let b = base.map(|b| value(b, q)).unwrap_or(v);
            row.push(if b > 0.0 { format!("{} ({:.2}x)", fmt_us(v), v / b) } else { fmt_us(v) });
        }
        let cpu = run.summary.as_ref().and_then(|s| s.server_cpu_per_call_ns);
        let base_cpu = base.and_then(|b| b.summary.as_ref()).and_then(|s| s.server_cpu_per_call_ns);
        row.push(match (cpu, base_cpu) {
            (Some(c), Some(b)) if b > 0.0 => format!("{c:.0} ns ({:.2}x)", c / b),
            (Some(c), _) => format!("{c:.0} ns"),
            _ => "-".into(),
        });
        rows.push(row);
    }
    markdown(&rows)
}

/// Renders rows as a Markdown table with aligned columns.
pub fn markdown(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push('|');
        for (c, w) in width.iter().enumerate() {
            let cell = r.get(c).map(String::as_str).unwrap_or("");
            out.push_str(&format!(" {cell:<w$} |"));
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for w in &width {
                out.push_str(&format!("{}|", "-".repeat(w + 2)));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(fmt_us(12.34), "12.3 us");
        assert_eq!(fmt_us(412.0), "412 us");
        assert_eq!(fmt_us(25_000.0), "25.0 ms");
        assert_eq!(fmt_rate(1_610_000.0), "1.61M/s");
        assert_eq!(fmt_rate(155_000.0), "155.0k/s");
    }

    #[test]
    fn markdown_aligns() {
        let t = markdown(&[vec!["a".into(), "bb".into()], vec!["ccc".into(), "d".into()]]);
        assert_eq!(t, "| a   | bb |\n|-----|----|\n| ccc | d  |\n");
    }
}
