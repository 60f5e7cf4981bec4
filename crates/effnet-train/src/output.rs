//! Run-folder outputs in timm's spirit: `summary.csv` (one row per epoch), `log.jsonl` (one JSON
//! object per step or epoch) and PNG training curves (loss, top-1, learning rate per step) drawn
//! with `plotters` into a buffer and saved with `image`; the font is embedded (DejaVu Sans, see
//! `assets/DejaVuSans-LICENSE.txt`), so no fontconfig or freetype is needed. Everything here can
//! be rebuilt from a checkpoint's history and the log ([`rebuild`]), which a resume does.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::{Value, json};

use crate::checkpoint::{EpochRow, write_atomic};

/// Rewrites `summary.csv` from the full history (so a resumed run never duplicates rows).
pub fn write_summary(run: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut s = String::from(
        "epoch,stage,img_size,train_loss,eval_loss,eval_top1,eval_top5,ema_top1,ema_top5,lr,img_per_sec,epoch_secs,images\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{:.6},{:.6},{:.4},{:.4},{},{},{:.6e},{:.2},{:.2},{}\n",
            r.epoch,
            r.stage,
            r.img_size,
            r.train_loss,
            r.eval_loss,
            r.eval_top1,
            r.eval_top5,
            opt(r.ema_top1),
            opt(r.ema_top5),
            r.lr,
            r.img_per_sec,
            r.epoch_secs,
            r.images
        ));
    }
    write_atomic(&run.join("summary.csv"), s.as_bytes())
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

/// Appends one JSON object as a line of `log.jsonl`.
pub fn append_log(run: &Path, value: &serde_json::Value) -> Result<()> {
    let p = run.join("log.jsonl");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    writeln!(f, "{value}").with_context(|| format!("cannot write {}", p.display()))
}

/// Drops log lines past `global_step` (what a resumed run will redo), keeping the log a single,
/// consistent history.
pub fn truncate_log(run: &Path, global_step: u64) -> Result<()> {
    let p = run.join("log.jsonl");
    let Ok(text) = fs::read_to_string(&p) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_none_or(|s| s <= global_step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    write_atomic(&p, out.as_bytes())
}

/// The `log.jsonl` record of a finished epoch.
pub fn epoch_record(row: &EpochRow, global_step: u64) -> Value {
    json!({"kind": "epoch", "step": global_step, "epoch": row.epoch,
           "train_loss": row.train_loss, "eval_loss": row.eval_loss,
           "eval_top1": row.eval_top1, "eval_top5": row.eval_top5,
           "ema_top1": row.ema_top1, "ema_top5": row.ema_top5,
           "lr": row.lr, "img_size": row.img_size, "stage": row.stage,
           "images": row.images})
}

fn read_log(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("log.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Brings every derived output of a resumed run in line with its checkpoint: drops log lines past
/// `global_step`, adds epoch records the log lacks (a kill after the checkpoint but before the
/// log write), and rewrites `summary.csv` and the plots from `history`.
pub fn rebuild(run: &Path, history: &[EpochRow], global_step: u64) -> Result<()> {
    truncate_log(run, global_step)?;
    let logged: Vec<u64> = read_log(run)
        .iter()
        .filter(|v| v["kind"] == "epoch")
        .filter_map(|v| v["epoch"].as_u64())
        .collect();
    for row in history {
        if !logged.contains(&(row.epoch as u64)) {
            append_log(run, &epoch_record(row, global_step))?;
        }
    }
    write_summary(run, history)?;
    write_plots(run, history)
}

/// Steps of the log as `(fractional epoch, loss, lr)`; the fractional epoch of step `i` (0-based)
/// of `n` in epoch `e` (1-based) is `e - 1 + (i + 1) / n`, so the end of epoch `e` is at `e`.
fn step_points(run: &Path) -> Vec<(f64, f64, f64)> {
    read_log(run)
        .iter()
        .filter(|v| v["kind"] == "step")
        .filter_map(|v| {
            let e = v["epoch"].as_f64()?;
            let i = v["iter"].as_f64()?;
            let n = v["steps"].as_f64()?;
            Some((
                e - 1.0 + (i + 1.0) / n,
                v["loss"].as_f64()?,
                v["lr"].as_f64()?,
            ))
        })
        .collect()
}

/// One line of a chart.
struct Series {
    label: &'static str,
    color: RGBColor,
    width: u32,
    points: Vec<(f64, f64)>,
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const LIGHT_BLUE: RGBColor = RGBColor(160, 196, 226);
const FONT: &str = "sans-serif";

/// Writes `loss.png`, `top1.png` and `lr.png` under `run/plots`: epoch rows from `rows`, per-step
/// loss and learning rate from `log.jsonl`.
pub fn write_plots(run: &Path, rows: &[EpochRow]) -> Result<()> {
    register_font();
    let dir = run.join("plots");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let steps = step_points(run);
    let ep = |f: fn(&EpochRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .filter_map(|r| f(r).map(|y| (r.epoch as f64, y)))
            .collect()
    };
    let loss = [
        Series {
            label: "train (per step)",
            color: LIGHT_BLUE,
            width: 1,
            points: steps.iter().map(|s| (s.0, s.1)).collect(),
        },
        Series {
            label: "train (epoch mean)",
            color: BLUE,
            width: 2,
            points: ep(|r| Some(r.train_loss)),
        },
        Series {
            label: "eval (raw weights)",
            color: ORANGE,
            width: 2,
            points: ep(|r| Some(r.eval_loss)),
        },
    ];
    line_chart(
        &dir.join("loss.png"),
        "Training and validation loss",
        "loss",
        &loss,
        SeriesLabelPosition::UpperRight,
    )?;
    let top1 = [
        Series {
            label: "eval top-1, raw weights",
            color: ORANGE,
            width: 2,
            points: ep(|r| Some(r.eval_top1)),
        },
        Series {
            label: "eval top-1, EMA weights",
            color: GREEN,
            width: 2,
            points: ep(|r| r.ema_top1),
        },
    ];
    line_chart(
        &dir.join("top1.png"),
        "Validation top-1 accuracy",
        "top-1 (%)",
        &top1,
        // Accuracy rises: the legend goes where the curves are not.
        SeriesLabelPosition::LowerRight,
    )?;
    let lr = [Series {
        label: "learning rate (per step)",
        color: BLUE,
        width: 2,
        points: steps.iter().map(|s| (s.0, s.2)).collect(),
    }];
    line_chart(
        &dir.join("lr.png"),
        "Learning rate schedule",
        "learning rate",
        &lr,
        SeriesLabelPosition::UpperRight,
    )
}

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TTF; if registration ever failed the charts would only
        // lose their text.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

/// `(min, max)` of `v` widened by 5 % (or by 0.5 when flat) so lines do not sit on the frame.
fn padded_range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite()) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi - lo < 1e-12 {
        0.5 * hi.abs().max(1e-3)
    } else {
        0.05 * (hi - lo)
    };
    (lo - pad, hi + pad)
}

/// Tick labels short enough for the axis: plain numbers, or scientific for tiny/huge ones.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws `series` on one chart with a title, axis labels, ticks and a legend, into a PNG.
fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<()> {
    const W: u32 = 800;
    const H: u32 = 480;
    let mut buf = vec![255u8; (W * H * 3) as usize];
    draw_chart(&mut buf, (W, H), (title, y_label), series, legend)
        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    let img = image::RgbImage::from_raw(W, H, buf).context("plot buffer size")?;
    effnet_data::fsutil::write_atomic_with(path, |tmp| {
        img.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
    .with_context(|| format!("cannot write plot {}", path.display()))
}

fn draw_chart(
    buf: &mut [u8],
    size: (u32, u32),
    (title, y_label): (&str, &str),
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
    root.fill(&WHITE)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = padded_range(all().map(|p| p.0).chain([0.0]));
    let (y0, y1) = padded_range(all().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0.max(0.0)..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_label)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 13))
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&tick)
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let style = s.color.stroke_width(s.width);
        let color = s.color;
        let points = if s.points.len() < 60 { 3 } else { 0 };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style).point_size(points))?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochRow {
        EpochRow {
            epoch,
            stage: 0,
            img_size: 32,
            train_loss: 2.0 / epoch as f64,
            eval_loss: 2.2 / epoch as f64,
            eval_top1: 40.0 + 10.0 * epoch as f64,
            eval_top5: 90.0,
            ema_top1: Some(35.0 + 12.0 * epoch as f64),
            ema_top5: Some(90.0),
            lr: 1e-3,
            img_per_sec: 100.0,
            epoch_secs: 1.0,
            images: 64,
        }
    }

    #[test]
    fn plots_have_text_lines_and_the_warmup() {
        let dir = std::env::temp_dir().join(format!("effnet-plots-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for e in 1..=3u64 {
            for i in 0..4u64 {
                let lr = if e == 1 {
                    1e-4 + (i + 1) as f64 * 2e-4
                } else {
                    1e-3
                };
                append_log(
                    &dir,
                    &json!({"kind": "step", "step": (e - 1) * 4 + i + 1, "epoch": e, "iter": i,
                            "steps": 4, "loss": 2.0, "lr": lr}),
                )
                .unwrap();
            }
        }
        let rows: Vec<EpochRow> = (1..=3).map(row).collect();
        write_plots(&dir, &rows).unwrap();
        for name in ["loss", "top1", "lr"] {
            let img = image::open(dir.join(format!("plots/{name}.png")))
                .unwrap()
                .to_rgb8();
            assert_eq!(img.dimensions(), (800, 480));
            // Dark text (title, ticks, legend) and coloured curve pixels are both present.
            let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
            let blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
            let orange = img.pixels().filter(|p| p.0 == [255, 127, 14]).count();
            assert!(dark > 500, "{name}: {dark} dark pixels, text missing?");
            assert!(blue + orange > 200, "{name}: curves missing");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rebuild_restores_summary_and_epoch_records() {
        let dir = std::env::temp_dir().join(format!("effnet-rebuild-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        append_log(&dir, &epoch_record(&row(1), 4)).unwrap();
        append_log(
            &dir,
            &json!({"kind": "step", "step": 9, "epoch": 3, "iter": 0}),
        )
        .unwrap();
        write_summary(&dir, &[row(1)]).unwrap();
        rebuild(&dir, &[row(1), row(2)], 8).unwrap();
        let csv = fs::read_to_string(dir.join("summary.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        let log = read_log(&dir);
        assert_eq!(log.len(), 2, "step 9 dropped, epoch 2 added: {log:?}");
        assert_eq!(log[1]["epoch"], 2);
        assert!(dir.join("plots/lr.png").is_file());
        fs::remove_dir_all(&dir).unwrap();
    }
}
