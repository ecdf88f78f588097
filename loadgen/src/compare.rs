//! `loadgen compare`: runs side by side, with ratios against the first, and
//! a percentile-distribution plot in the style of HdrHistogram's plotter
//! (x: 1/(1-percentile) on a log scale, one curve per run).

use std::fs;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

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

/// Draws the percentile distribution of every run into an SVG at `path`.
pub fn plot(runs: &[Run], path: &Path, title: &str, log_y: bool) -> Result<PathBuf, String> {
    if runs.is_empty() {
        return Err("nothing to plot".into());
    }
    let e = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let series: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| {
            let pts = r
                .hgrm
                .points
                .iter()
                .filter(|p| p.quantile < 1.0)
                .map(|p| (1.0 / (1.0 - p.quantile), p.value.max(1e-3)))
                .collect();
            (r.name.clone(), pts)
        })
        .collect();
    let x_max = series.iter().flat_map(|(_, p)| p.iter().map(|x| x.0)).fold(100.0f64, f64::max).min(1e7);
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_max = runs.iter().map(|r| r.hgrm.max).fold(1.0f64, f64::max) * 1.05;
    let y_min = series.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)).fold(f64::MAX, f64::min).max(1e-3);

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|x| e(&x))?;
    }
    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    let x_fmt = |x: &f64| {
        let p = 100.0 - 100.0 / x;
        let digits = (x.log10().round() as i32 - 2).max(0) as usize;
        format!("{p:.digits$}%")
    };
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("percentile")
                .y_desc("latency (us)")
                .x_label_formatter(&x_fmt)
                .draw()
                .map_err(|x| e(&x))?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = palette[i % palette.len()];
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                    .map_err(|x| e(&x))?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|x| e(&x))?;
        }};
    }
    let builder = |root| {
        let mut b = ChartBuilder::on(root);
        b.caption(title, ("sans-serif", 22)).margin(16).x_label_area_size(44).y_label_area_size(80);
        b
    };
    if log_y {
        draw!(builder(&root)
            .build_cartesian_2d((1f64..x_max).log_scale(), (y_min * 0.9..y_max).log_scale())
            .map_err(|x| e(&x))?);
    } else {
        draw!(builder(&root).build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max).map_err(|x| e(&x))?);
    }
    root.present().map_err(|x| e(&x))?;
    Ok(path.to_path_buf())
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
