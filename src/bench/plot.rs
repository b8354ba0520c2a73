//! A PNG line plot of a benchmark report, drawn with a tiny rasteriser and a
//! 5×7 bitmap font (no font or plotting dependency): rate against case, one
//! coloured line per implementation, the measured peak as a dashed line.

use super::{peak_for, BenchReport};
use std::path::Path;

const W: usize = 1000;
const H: usize = 620;
const LEFT: usize = 80;
const RIGHT: usize = 330;
const TOP: usize = 40;
const BOTTOM: usize = 70;

const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// An RGB image being drawn.
struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            px: vec![255; W * H * 3],
        }
    }
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }
    /// Bresenham line, `thick` pixels wide; `dash` > 0 skips every other
    /// run of `dash` pixels.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3], thick: i64, dash: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err, mut step) = (x0, y0, dx + dy, 0i64);
        loop {
            if dash == 0 || (step / dash) % 2 == 0 {
                self.rect(
                    x - thick / 2,
                    y - thick / 2,
                    x + (thick - 1) / 2,
                    y + (thick - 1) / 2,
                    c,
                );
            }
            step += 1;
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
    /// Draws `text` with its top-left at (x, y), each font pixel `scale`² pixels.
    fn text(&mut self, x: i64, y: i64, text: &str, c: [u8; 3], scale: i64) {
        for (ci, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            for (ry, row) in rows.iter().enumerate() {
                for rx in 0..5 {
                    if row >> (4 - rx) & 1 == 1 {
                        let (px, py) = (x + (ci as i64 * 6 + rx) * scale, y + ry as i64 * scale);
                        self.rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
        }
    }
}

/// Width in pixels of `text` at `scale`.
fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * 6 * scale
}

/// 5×7 glyphs, one byte per row, bit 4 = leftmost column. Lower case is drawn
/// as upper case; unknown characters as a small box.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '^' => [0x04, 0x0A, 0x11, 0, 0, 0, 0],
        '@' => [0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E],
        '*' => [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0],
        _ => [0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0],
    }
}

/// A "nice" tick step (1, 2 or 5 × 10ᵏ) giving about `target` ticks up to `max`.
fn tick_step(max: f64, target: f64) -> f64 {
    let raw = max / target;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Draws `report` as a PNG at `path`. Cases are spaced evenly on the x axis
/// (labelled with their size, or their index when the labels are long).
pub(super) fn write_plot(report: &BenchReport, path: &Path) -> Result<(), String> {
    let rows: Vec<_> = report.measurements.iter().filter(|m| m.rate().is_some()).collect();
    if rows.is_empty() {
        return Err("nothing was timed, so there is nothing to plot".into());
    }
    let unit = rows[0].unit;
    let rows: Vec<_> = rows.into_iter().filter(|m| m.unit == unit).collect();
    let mut cases: Vec<(usize, String)> = Vec::new();
    let mut impls: Vec<String> = Vec::new();
    for m in &rows {
        if !cases.iter().any(|(s, c)| *s == m.size && *c == m.case) {
            cases.push((m.size, m.case.clone()));
        }
        if !impls.contains(&m.implementation) {
            impls.push(m.implementation.clone());
        }
    }
    let peak = peak_for(&report.machine, unit);
    let ymax = rows.iter().filter_map(|m| m.rate()).fold(peak, f64::max) * 1.1;
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let xpos = |i: usize| LEFT as i64 + ((i as f64 + 0.5) / cases.len() as f64 * pw) as i64;
    let ypos = |v: f64| (TOP as f64 + ph - v / ymax * ph).round() as i64;

    let mut cv = Canvas::new();
    let (black, grey) = ([0, 0, 0], [220, 220, 220]);
    let step = tick_step(ymax, 6.0);
    let mut t = 0.0;
    while t <= ymax {
        let y = ypos(t);
        cv.line((LEFT as i64, y), ((W - RIGHT) as i64, y), grey, 1, 0);
        let lab = if step >= 1.0 {
            format!("{t:.0}")
        } else {
            format!("{t:.2}")
        };
        cv.text(LEFT as i64 - 8 - text_width(&lab, 1), y - 3, &lab, black, 1);
        t += step;
    }
    cv.line(
        (LEFT as i64, TOP as i64),
        (LEFT as i64, (H - BOTTOM) as i64),
        black,
        1,
        0,
    );
    cv.line(
        (LEFT as i64, (H - BOTTOM) as i64),
        ((W - RIGHT) as i64, (H - BOTTOM) as i64),
        black,
        1,
        0,
    );
    let short = cases.iter().all(|(_, c)| c.len() <= 16);
    for (i, (_, c)) in cases.iter().enumerate() {
        let lab = if short { c.clone() } else { format!("{}", i + 1) };
        let x = xpos(i);
        cv.line((x, (H - BOTTOM) as i64), (x, (H - BOTTOM) as i64 + 4), black, 1, 0);
        cv.text(x - text_width(&lab, 1) / 2, (H - BOTTOM) as i64 + 10, &lab, black, 1);
    }
    let title = format!(
        "kiln bench {} - {} thread(s) - {}",
        report.kernel, report.machine.threads, unit
    );
    cv.text(LEFT as i64, 12, &title, black, 2);
    cv.text(
        LEFT as i64,
        (H - 30) as i64,
        if short { "case" } else { "case (index, see table)" },
        black,
        1,
    );

    // The measured peak, dashed.
    let red = [200, 0, 0];
    cv.line((LEFT as i64, ypos(peak)), ((W - RIGHT) as i64, ypos(peak)), red, 2, 8);
    let peak_name = if unit == "GFLOP/s" { "FMA peak" } else { "copy BW" };
    let legend_x = (W - RIGHT + 20) as i64;
    cv.line((legend_x, 50), (legend_x + 24, 50), red, 2, 6);
    cv.text(legend_x + 32, 47, &format!("{peak_name} {peak:.0}"), black, 1);

    for (li, name) in impls.iter().enumerate() {
        let color = PALETTE[li % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for (ci, (size, case)) in cases.iter().enumerate() {
            let hit = rows
                .iter()
                .find(|m| m.implementation == *name && m.size == *size && m.case == *case);
            match hit.and_then(|m| m.rate()) {
                Some(r) => {
                    let p = (xpos(ci), ypos(r));
                    if let Some(q) = prev {
                        cv.line(q, p, color, 2, 0);
                    }
                    cv.rect(p.0 - 3, p.1 - 3, p.0 + 3, p.1 + 3, color);
                    prev = Some(p);
                }
                None => prev = None,
            }
        }
        let y = 70 + 16 * li as i64;
        cv.rect(legend_x, y - 2, legend_x + 24, y + 2, color);
        let label: String = name.chars().take(40).collect();
        cv.text(legend_x + 32, y - 3, &label, black, 1);
    }

    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| format!("png: {e}"))?;
    writer.write_image_data(&cv.px).map_err(|e| format!("png: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(100.0, 5.0), 20.0);
        assert_eq!(tick_step(7.0, 6.0), 2.0);
    }

    #[test]
    fn every_glyph_fits_five_columns() {
        for c in (' '..='~').chain("%".chars()) {
            assert!(glyph(c).iter().all(|r| *r < 32), "{c}");
        }
    }
}
