//! Run-folder outputs in timm's spirit: `summary.csv` (one row per epoch), `log.jsonl` (one JSON
//! object per logged step or epoch) and PNG plots of loss, top-1 and learning rate, drawn with the
//! `image` crate so no font or system library is needed.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use crate::checkpoint::{EpochRow, write_atomic};

/// Rewrites `summary.csv` from the full history (so a resumed run never duplicates rows).
pub fn write_summary(run: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut s = String::from(
        "epoch,stage,img_size,train_loss,eval_loss,eval_top1,eval_top5,ema_top1,ema_top5,lr,img_per_sec,epoch_secs\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{:.6},{:.6},{:.4},{:.4},{},{},{:.6e},{:.2},{:.2}\n",
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
            r.epoch_secs
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

const W: u32 = 640;
const H: u32 = 400;
const MARGIN: u32 = 40;
const COLORS: [Rgb<u8>; 3] = [Rgb([31, 119, 180]), Rgb([255, 127, 14]), Rgb([44, 160, 44])];

/// Draws `series` (each a list of `(x, y)`) as lines on one chart with a grid; NaN points are
/// skipped. The y range is written as tiny pixel digits in the corner.
pub fn line_plot(path: &Path, series: &[Vec<(f64, f64)>]) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flatten()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (x0, x1) = range(pts.iter().map(|p| p.0));
    let (y0, y1) = range(pts.iter().map(|p| p.1));
    let px = |x: f64| MARGIN as f64 + (x - x0) / (x1 - x0) * (W - 2 * MARGIN) as f64;
    let py = |y: f64| (H - MARGIN) as f64 - (y - y0) / (y1 - y0) * (H - 2 * MARGIN) as f64;
    let grid = Rgb([225, 225, 225]);
    for i in 0..=4 {
        let y = MARGIN as f64 + i as f64 * (H - 2 * MARGIN) as f64 / 4.0;
        line(&mut img, (MARGIN as f64, y), ((W - MARGIN) as f64, y), grid);
        let x = MARGIN as f64 + i as f64 * (W - 2 * MARGIN) as f64 / 4.0;
        line(&mut img, (x, MARGIN as f64), (x, (H - MARGIN) as f64), grid);
    }
    let axis = Rgb([0, 0, 0]);
    let (l, b) = (MARGIN as f64, (H - MARGIN) as f64);
    line(&mut img, (l, MARGIN as f64), (l, b), axis);
    line(&mut img, (l, b), ((W - MARGIN) as f64, b), axis);
    for (k, s) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let good: Vec<(f64, f64)> = s
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        for w in good.windows(2) {
            line(
                &mut img,
                (px(w[0].0), py(w[0].1)),
                (px(w[1].0), py(w[1].1)),
                c,
            );
        }
        for p in &good {
            for dx in -1..=1 {
                for dy in -1..=1 {
                    put(&mut img, px(p.0) as i64 + dx, py(p.1) as i64 + dy, c);
                }
            }
        }
    }
    text(&mut img, 2, MARGIN as i64 - 4, &short(y1));
    text(&mut img, 2, (H - MARGIN) as i64 - 4, &short(y0));
    text(
        &mut img,
        (W - MARGIN) as i64 - 10,
        (H - MARGIN) as i64 + 8,
        &short(x1),
    );
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    img.save(path)
        .with_context(|| format!("cannot write plot {}", path.display()))
}

/// Writes `loss.png`, `top1.png` and `lr.png` under `run/plots` from the epoch history.
pub fn write_plots(run: &Path, rows: &[EpochRow]) -> Result<()> {
    let ep = |f: fn(&EpochRow) -> f64| -> Vec<(f64, f64)> {
        rows.iter().map(|r| (r.epoch as f64 + 1.0, f(r))).collect()
    };
    let dir = run.join("plots");
    line_plot(
        &dir.join("loss.png"),
        &[ep(|r| r.train_loss), ep(|r| r.eval_loss)],
    )?;
    line_plot(
        &dir.join("top1.png"),
        &[ep(|r| r.eval_top1), ep(|r| r.ema_top1.unwrap_or(f64::NAN))],
    )?;
    line_plot(&dir.join("lr.png"), &[ep(|r| r.lr)])
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 0.01 || v.abs() >= 1e5) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), c: Rgb<u8>) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        put(
            img,
            (a.0 + (b.0 - a.0) * t).round() as i64,
            (a.1 + (b.1 - a.1) * t).round() as i64,
            c,
        );
    }
}

/// 3×5 pixel glyphs for digits and the few symbols numbers need.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'e' => [7, 5, 7, 4, 7],
        '+' => [0, 2, 7, 2, 0],
        _ => [0; 5],
    }
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str) {
    let c = Rgb([0, 0, 0]);
    for (i, ch) in s.chars().enumerate() {
        let g = glyph(ch);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for sx in 0..2 {
                        for sy in 0..2 {
                            put(
                                img,
                                x + (i as i64) * 8 + col * 2 + sx,
                                y + row as i64 * 2 + sy,
                                c,
                            );
                        }
                    }
                }
            }
        }
    }
}
