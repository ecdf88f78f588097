//! Percentile-distribution plots in the style of HdrHistogram's plotter:
//! x is 1/(1-percentile) on a log scale (so p99, p99.9 and p99.99 get equal
//! room, which is where servers differ), y is latency, one curve per run.
//!
//! [`plot`] draws one chart (`loadgen compare --plot`); [`panels`] draws a
//! chart per case in one SVG (the end of `loadgen bench`). Both write SVG,
//! which needs no font files or image libraries on the machine.

use std::fs;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::compare::Run;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws the percentile distribution of every run into an SVG at `path`.
pub fn plot(runs: &[Run], path: &Path, title: &str, log_y: bool) -> Result<PathBuf, String> {
    if runs.is_empty() {
        return Err("nothing to plot".into());
    }
    let e = |x: &dyn std::fmt::Display| format!("plot {}: {x}", path.display());
    create_parent(path)?;
    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    chart(&root, runs, title, 22, log_y).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(path.to_path_buf())
}

/// Draws one chart per `(title, runs)` panel, two panels a row, under a
/// common `title`, into an SVG at `path`. Latency is on a log axis: the
/// panels hold medians of tens of microseconds and tails of milliseconds.
pub fn panels(panels: &[(String, Vec<Run>)], path: &Path, title: &str) -> Result<PathBuf, String> {
    if panels.is_empty() {
        return Err("nothing to plot: no run finished".into());
    }
    let e = |x: &dyn std::fmt::Display| format!("plot {}: {x}", path.display());
    let cols = if panels.len() > 1 { 2 } else { 1 };
    let rows = panels.len().div_ceil(cols);
    create_parent(path)?;
    let root = SVGBackend::new(path, (1200, 60 + 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let body = root.titled(title, ("sans-serif", 24)).map_err(|x| e(&x))?;
    for (area, (name, runs)) in body.split_evenly((rows, cols)).iter().zip(panels) {
        chart(area, runs, name, 18, true).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(path.to_path_buf())
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::create_dir_all(dir).map_err(|x| format!("plot {}: {x}", path.display())),
        None => Ok(()),
    }
}

/// One chart of `runs` on `area`.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[Run],
    title: &str,
    title_size: u32,
    log_y: bool,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
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
                let color = PALETTE[i % PALETTE.len()];
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
    let builder = || {
        let mut b = ChartBuilder::on(area);
        b.caption(title, ("sans-serif", title_size)).margin(16).x_label_area_size(44).y_label_area_size(80);
        b
    };
    if log_y {
        draw!(builder()
            .build_cartesian_2d((1f64..x_max).log_scale(), (y_min * 0.9..y_max).log_scale())
            .map_err(|x| e(&x))?);
    } else {
        draw!(builder().build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max).map_err(|x| e(&x))?);
    }
    Ok(())
}
