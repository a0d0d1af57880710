//! `--plot FILE.png`: charts drawn with plotters' bitmap backend. Text is rasterised by
//! `ab_glyph` from a font compiled into the binary (`assets/`), so no system font or
//! fontconfig is needed.
//!
//! - load scenarios: throughput per second over time (top) and the latency distribution as
//!   an HDR percentile plot (bottom; the x axis stretches the tail: 90 %, 99 %, 99.9 %…);
//! - `connections`: connections open over time;
//! - `catchup`: events fetched over time.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use crate::report::PlotData;
use crate::stats::Sample;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 900);

fn fonts() -> Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if register_font(FAMILY, style, FONT).is_err() {
                result = Err(anyhow!("the embedded font is invalid"));
            }
        }
    });
    result
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Draws `data` into `path` (PNG). Does nothing for [`PlotData::None`].
pub fn draw(path: &Path, data: &PlotData) -> Result<()> {
    fonts()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    match data {
        PlotData::None => return Ok(()),
        PlotData::Load {
            title,
            series,
            latencies,
        } => {
            let root = root
                .titled(title, (FAMILY, 22).into_font().style(FontStyle::Bold))
                .map_err(err)?;
            let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
            throughput(&top, series)?;
            latency(&bottom, latencies)?;
        }
        PlotData::Connections { title, open } => {
            let max_y = open.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64 * 1.1;
            line_chart(
                &root,
                title,
                "seconds since the first connect",
                "connections open",
                open,
                max_y,
            )?;
        }
        PlotData::Catchup { title, fetched } => {
            let max_y = fetched.last().map_or(1, |p| p.1).max(1) as f64 * 1.05;
            line_chart(
                &root,
                title,
                "ms since the first GET /sync",
                "events fetched",
                fetched,
                max_y,
            )?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// One blue line of `(x, count)` points with its axis descriptions.
fn line_chart(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[(f64, u64)],
    max_y: f64,
) -> Result<()> {
    let max_x = points.last().map_or(1.0, |p| p.0).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 16))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|&(t, n)| (t, n as f64)),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?;
    Ok(())
}

fn throughput(area: &DrawingArea<BitMapBackend<'_>, Shift>, series: &[Sample]) -> Result<()> {
    let max_x = series.last().map_or(1.0, |s| s.t).max(1.0);
    let max_y = series
        .iter()
        .map(|s| s.acked_per_second.max(s.delivered_per_second))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("throughput per second", (FAMILY, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since sending started")
        .y_desc("messages / s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 15))
        .draw()
        .map_err(err)?;
    type Line = (&'static str, RGBColor, fn(&Sample) -> f64);
    let lines: [Line; 2] = [
        ("acknowledged (durable)", BLUE, |s| s.acked_per_second),
        ("delivered", RGBColor(220, 90, 0), |s| {
            s.delivered_per_second
        }),
    ];
    for (label, color, value) in lines {
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|s| (s.t, value(s))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// x = −log10(1 − q): 1 is the 90th percentile, 2 the 99th, 3 the 99.9th…
fn tail_x(q: f64) -> f64 {
    -(1.0 - q.min(0.999_999)).log10()
}

fn latency(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    latencies: &[(String, Histogram<u64>)],
) -> Result<()> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = latencies
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let points = h
                .iter_quantiles(4)
                .map(|v| {
                    (
                        tail_x(v.quantile_iterated_to()),
                        v.value_iterated_to() as f64 / 1000.0,
                    )
                })
                .collect();
            (name.as_str(), points)
        })
        .collect();
    // As far into the tail as the samples reach: 10^n samples resolve n nines.
    let samples = latencies.iter().map(|(_, h)| h.len()).max().unwrap_or(0);
    let max_x = (samples.max(1) as f64).log10().ceil().clamp(2.0, 6.0);
    let curves: Vec<(&str, Vec<(f64, f64)>)> = curves
        .into_iter()
        .map(|(name, points)| {
            let clamped = points.into_iter().map(|(x, y)| (x.min(max_x), y)).collect();
            (name, clamped)
        })
        .collect();
    let max_y = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(0.1, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("latency distribution", (FAMILY, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            if p < 99.0 {
                format!("{p:.0}%")
            } else {
                format!("{}%", trim(p))
            }
        })
        .label_style((FAMILY, 15))
        .draw()
        .map_err(err)?;
    let colors = [BLUE, RGBColor(220, 90, 0), RGBColor(0, 150, 60), MAGENTA];
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// 99.9000 → "99.9", 99.99 → "99.99".
fn trim(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_axis_stretches_high_percentiles() {
        assert!((tail_x(0.9) - 1.0).abs() < 1e-9);
        assert!((tail_x(0.99) - 2.0).abs() < 1e-9);
        assert!(tail_x(1.0).is_finite());
        assert_eq!(trim(99.9), "99.9");
        assert_eq!(trim(99.99), "99.99");
    }

    #[test]
    fn draws_a_load_chart_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("load.png");
        let mut h = crate::stats::histogram();
        for v in 1..5000u64 {
            h.record(v).unwrap();
        }
        let series = (1..=5)
            .map(|t| Sample {
                t: t as f64,
                sent_per_second: 100.0,
                acked_per_second: 100.0 * t as f64,
                delivered_per_second: 90.0 * t as f64,
            })
            .collect();
        let data = PlotData::Load {
            title: "test".into(),
            series,
            latencies: vec![("send → ack".into(), h)],
        };
        draw(&path, &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 10_000);
    }
}
