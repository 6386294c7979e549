//! The run's picture: `metrics.png` next to `metrics.jsonl`, redrawn after every step — four
//! panels over steps: reward and accuracy (train, and greedy eval when present; DPO's
//! chosen-vs-rejected margin, train and held-out), KL (in the loss,
//! in the reward, and old→new), mean response length, and loss.
//!
//! Text needs a TrueType font; plotters' `ab_glyph` renderer gets the first one found among
//! `OXRL_PLOT_FONT` and the usual DejaVu / Liberation paths. Without one the panels are drawn
//! without captions and tick labels (the lines are the information; the log says why).

use crate::train_error::{TrainError, TrainResult};
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

/// File name of the plot inside `output_dir`.
pub const PLOT_FILE: &str = "metrics.png";

const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font once; whether text can be drawn.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let env = std::env::var("OXRL_PLOT_FONT").ok();
        let candidates = env.iter().map(String::as_str).chain(FONT_PATHS);
        for p in candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One line of a panel: a label and its `(step, value)` points.
type Series = (&'static str, Vec<(f64, f64)>);

fn series(records: &[serde_json::Map<String, Value>], key: &'static str) -> Series {
    let pts = records
        .iter()
        .filter_map(|r| {
            let s = r.get("step")?.as_f64()?;
            let v = r.get(key)?.as_f64()?;
            v.is_finite().then_some((s, v))
        })
        .collect();
    (key, pts)
}

fn err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Invariant(format!("drawing {}: {e}", path.display()))
}

/// Draws the metrics of `metrics_jsonl` into `png` (written to a temporary file, then renamed).
pub fn draw(metrics_jsonl: &Path, png: &Path) -> TrainResult<()> {
    let text =
        std::fs::read_to_string(metrics_jsonl).map_err(|e| TrainError::io(metrics_jsonl, e))?;
    let records: Vec<serde_json::Map<String, Value>> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let panels: [(&str, Vec<Series>); 4] = [
        (
            "reward / accuracy / DPO margin",
            vec![
                series(&records, "reward"),
                series(&records, "accuracy"),
                series(&records, "eval_accuracy"),
                series(&records, "eval_reward"),
                series(&records, "rewards/margins"),
                series(&records, "eval_rewards/margins"),
            ],
        ),
        (
            "KL",
            vec![
                series(&records, "kl"),
                series(&records, "reward_kl"),
                series(&records, "approx_kl"),
            ],
        ),
        ("response length", vec![series(&records, "response_length")]),
        (
            "loss",
            vec![series(&records, "loss"), series(&records, "eval_loss")],
        ),
    ];
    let tmp = png.with_extension("png.tmp.png");
    {
        let text_ok = font_available();
        let root = BitMapBackend::new(&tmp, (1200, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(png, e))?;
        let areas = root.split_evenly((2, 2));
        let colors = [BLUE, RED, GREEN, MAGENTA];
        for (area, (title, lines)) in areas.iter().zip(&panels) {
            let pts: Vec<&(f64, f64)> = lines.iter().flat_map(|(_, p)| p).collect();
            if pts.is_empty() {
                continue;
            }
            let (x0, x1) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
            let (y0, y1) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let pad = ((y1 - y0) * 0.05).max(1e-6);
            let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
            let mut builder = ChartBuilder::on(area);
            builder.margin(12);
            if text_ok {
                builder
                    .caption(*title, ("sans-serif", 20))
                    .x_label_area_size(30)
                    .y_label_area_size(60);
            }
            let mut chart = builder
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|e| err(png, e))?;
            let mut mesh = chart.configure_mesh();
            if text_ok {
                mesh.x_desc("step");
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(|e| err(png, e))?;
            for ((label, p), color) in lines.iter().zip(colors) {
                if p.is_empty() {
                    continue;
                }
                let s = chart
                    .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| err(png, e))?;
                if text_ok {
                    s.label(*label).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                }
            }
            if text_ok {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 14))
                    .draw()
                    .map_err(|e| err(png, e))?;
            }
        }
        root.present().map_err(|e| err(png, e))?;
    }
    std::fs::rename(&tmp, png).map_err(|e| TrainError::io(png, e))
}

/// The picture of a multi-stage run: one chart over all stages in order (each stage the same
/// width, from its first step to its last), with held-out greedy accuracy and the training
/// reward, one colour per stage, and a vertical line where a stage begins. `stages` are
/// `(name, metrics.jsonl)`; written to a temporary file, then renamed.
pub fn draw_stages(stages: &[(String, std::path::PathBuf)], png: &Path) -> TrainResult<()> {
    // (label, points, colour, held-out accuracy (bold) or training reward (thin)).
    type Line = (String, Vec<(f64, f64)>, RGBColor, bool);
    let mut lines: Vec<Line> = Vec::new();
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN];
    let mut starts = Vec::new();
    let mut carried: Option<(f64, f64)> = None;
    for (i, (name, path)) in stages.iter().enumerate() {
        let records = crate::metrics::read_records(path)?;
        let color = colors[i % colors.len()];
        let last = records
            .iter()
            .filter_map(|r| r.get("step")?.as_f64())
            .fold(0.0f64, f64::max)
            .max(1.0);
        // Every stage gets the same width: x = stage index + step / last step.
        let shift = |(s, v): (f64, f64)| (i as f64 + s / last, v);
        let (_, eval) = series(&records, "eval_accuracy");
        let (_, train) = series(&records, "reward");
        starts.push(i as f64);
        // A stage starts from the model the previous one ended with: its line starts there.
        let mut eval: Vec<(f64, f64)> = eval.into_iter().map(shift).collect();
        if let Some(p) = carried {
            if eval.first().is_none_or(|f| f.0 > i as f64) {
                eval.insert(0, p);
            }
        }
        carried = eval.last().copied().or(carried);
        lines.push((format!("{name}: held-out accuracy"), eval, color, true));
        lines.push((
            format!("{name}: training reward"),
            train.into_iter().map(shift).collect(),
            color,
            false,
        ));
    }
    let offset = stages.len() as f64;
    let x1 = offset.max(1.0);
    let (y0, y1) = lines
        .iter()
        .flat_map(|l| &l.1)
        .fold((0.0f64, 1.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let tmp = png.with_extension("png.tmp.png");
    {
        let text_ok = font_available();
        let root = BitMapBackend::new(&tmp, (1000, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(png, e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(16);
        if text_ok {
            let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
            builder
                .caption(
                    format!("held-out accuracy and reward: {}", names.join(" → ")),
                    ("sans-serif", 22),
                )
                .x_label_area_size(36)
                .y_label_area_size(50);
        }
        let mut chart = builder
            .build_cartesian_2d(0.0..x1, (y0 - 0.02)..(y1 + 0.02))
            .map_err(|e| err(png, e))?;
        let mut mesh = chart.configure_mesh();
        if text_ok {
            let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
            mesh.x_desc(format!(
                "stages in order, each from its first to its last step: {}",
                names.join(" | ")
            ))
            .x_label_formatter(&|_| String::new());
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(png, e))?;
        for x in starts.iter().skip(1) {
            chart
                .draw_series(LineSeries::new(
                    [(*x, y0 - 0.02), (*x, y1 + 0.02)],
                    BLACK.mix(0.4).stroke_width(1),
                ))
                .map_err(|e| err(png, e))?;
        }
        for (label, pts, color, bold) in &lines {
            if pts.is_empty() {
                continue;
            }
            let style = if *bold {
                color.stroke_width(3)
            } else {
                color.mix(0.35).stroke_width(1)
            };
            let s = chart
                .draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(|e| err(png, e))?;
            if text_ok {
                s.label(label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
            if *bold {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                    .map_err(|e| err(png, e))?;
            }
        }
        if text_ok {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| err(png, e))?;
        }
        root.present().map_err(|e| err(png, e))?;
    }
    std::fs::rename(&tmp, png).map_err(|e| TrainError::io(png, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_from_metrics() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("metrics.jsonl");
        let lines: Vec<String> = (1..=5)
            .map(|s| {
                format!(
                    r#"{{"step":{s},"reward":{},"accuracy":{},"kl":{},"response_length":{},"loss":{}}}"#,
                    0.1 * s as f64,
                    0.05 * s as f64,
                    0.01,
                    8 - s,
                    1.0 / s as f64
                )
            })
            .collect();
        std::fs::write(&m, lines.join("\n")).unwrap();
        let png = d.path().join(PLOT_FILE);
        draw(&m, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5_000, "a drawn chart, not a blank image");
        // Redrawing replaces it.
        draw(&m, &png).unwrap();
        assert!(!png.with_extension("png.tmp.png").exists());
    }

    #[test]
    fn draws_the_stages_of_a_pipeline_in_one_chart() {
        let d = tempfile::tempdir().unwrap();
        let mut stages = Vec::new();
        for (name, n) in [("sft", 4), ("grpo", 3)] {
            let m = d.path().join(format!("{name}.jsonl"));
            let lines: Vec<String> = (0..=n)
                .map(|s| {
                    format!(
                        r#"{{"step":{s},"eval_accuracy":{},"reward":0.5}}"#,
                        0.1 * s as f64
                    )
                })
                .collect();
            std::fs::write(&m, lines.join("\n")).unwrap();
            stages.push((name.to_string(), m));
        }
        let png = d.path().join("pipeline.png");
        draw_stages(&stages, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5_000, "a drawn chart, not a blank image");
    }
}
