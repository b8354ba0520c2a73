//! Plots without a plotting library: a tiny RGB rasteriser ([`Canvas`]: anti-aliased discs,
//! lines, rectangles, 5×7 bitmap text) and the two figures a run writes — the 2-D scatter of
//! real vs generated samples, and the loss curves.

use std::path::Path;

use kiln_core::{Error, Result};

use crate::png_out::write_png_rgb;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Colours for series and generated samples (matplotlib's tab10, which most readers know).
pub const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const AXIS: Rgb = [60, 60, 60];
const GRID: Rgb = [232, 232, 232];

/// An RGB raster with simple drawing primitives. Coordinates are pixels, `(0, 0)` top-left;
/// drawing outside the canvas is clipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `[height, width, 3]` bytes.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas {
            width,
            height,
            rgb: background.iter().copied().cycle().take(width * height * 3).collect(),
        }
    }

    /// The colour at `(x, y)`, or `None` outside the canvas.
    pub fn pixel(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| {
            let i = (y * self.width + x) * 3;
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        })
    }

    /// Blend `color` over the pixel at `(x, y)` with opacity `alpha` in `[0, 1]`.
    pub fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let alpha = alpha.clamp(0.0, 1.0);
        let i = (y as usize * self.width + x as usize) * 3;
        for (channel, &c) in color.iter().enumerate() {
            let old = self.rgb[i + channel] as f32;
            self.rgb[i + channel] = (old + (c as f32 - old) * alpha).round() as u8;
        }
    }

    /// Fill the rectangle `[x0, x1) × [y0, y1)`.
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        for y in y0.max(0)..y1.min(self.height as i64) {
            for x in x0.max(0)..x1.min(self.width as i64) {
                self.blend(x, y, color, 1.0);
            }
        }
    }

    /// A filled disc centred at `(cx, cy)` with an anti-aliased edge; `alpha` is its opacity.
    pub fn disc(&mut self, cx: f32, cy: f32, radius: f32, color: Rgb, alpha: f32) {
        if !(cx.is_finite() && cy.is_finite()) {
            return;
        }
        let reach = radius + 1.0;
        for y in (cy - reach).floor() as i64..=(cy + reach).ceil() as i64 {
            for x in (cx - reach).floor() as i64..=(cx + reach).ceil() as i64 {
                let distance = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                // Coverage of a pixel by the disc edge, approximated by its signed distance.
                let coverage = (radius + 0.5 - distance).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend(x, y, color, coverage * alpha);
                }
            }
        }
    }

    /// A circle outline of the given radius and line width, anti-aliased.
    pub fn circle(&mut self, cx: f32, cy: f32, radius: f32, width: f32, color: Rgb) {
        if !(cx.is_finite() && cy.is_finite()) {
            return;
        }
        let reach = radius + width + 1.0;
        for y in (cy - reach).floor() as i64..=(cy + reach).ceil() as i64 {
            for x in (cx - reach).floor() as i64..=(cx + reach).ceil() as i64 {
                let distance = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                let coverage = (width / 2.0 + 0.5 - (distance - radius).abs()).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend(x, y, color, coverage);
                }
            }
        }
    }

    /// A line of the given width from `(x0, y0)` to `(x1, y1)`, stamped as discs every half
    /// pixel (simple, and smooth enough for curves made of many short segments).
    pub fn line(&mut self, (x0, y0): (f32, f32), (x1, y1): (f32, f32), width: f32, color: Rgb) {
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return;
        }
        let length = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
        // Long off-canvas segments would only waste time.
        let steps = ((length * 2.0).ceil() as usize).clamp(1, 8 * (self.width + self.height));
        for step in 0..=steps {
            let t = step as f32 / steps as f32;
            self.disc(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, width / 2.0, color, 0.6);
        }
    }

    /// Draw `text` with the built-in 5×7 font, top-left corner at `(x, y)`, each font pixel a
    /// `scale × scale` block. Lowercase letters are drawn as capitals.
    pub fn text(&mut self, x: i64, y: i64, text: &str, color: Rgb, scale: i64) {
        for (index, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            let left = x + index as i64 * 6 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for column in 0..5 {
                    if bits & (0b10000 >> column) != 0 {
                        let (px, py) = (left + column * scale, y + row as i64 * scale);
                        self.fill_rect(px, py, px + scale, py + scale, color);
                    }
                }
            }
        }
    }

    /// Width in pixels of `text` drawn by [`Canvas::text`] at `scale`.
    pub fn text_width(text: &str, scale: i64) -> i64 {
        let n = text.chars().count() as i64;
        (n * 6 - 1).max(0) * scale
    }

    /// Write the canvas to `path` as PNG, atomically.
    pub fn write_png(&self, path: impl AsRef<Path>) -> Result<()> {
        write_png_rgb(path, self.width as u32, self.height as u32, &self.rgb)
    }
}

/// The 5×7 bitmap of a character: 7 rows, bit 4 = leftmost column. Unknown characters draw
/// as `?`.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        'A' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'B' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'J' => [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        'K' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'M' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'Q' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'V' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'W' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
        'Z' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        '-' => [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000],
        '.' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100],
        '_' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111],
        ':' => [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000],
        '/' => [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000],
        '(' => [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ')' => [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        '=' => [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000],
        '+' => [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000],
        ',' => [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000],
        '%' => [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
        '[' => [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110],
        ']' => [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110],
        '@' => [0b01110, 0b10001, 0b10111, 0b10101, 0b10111, 0b10000, 0b01110],
        '^' => [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000],
        '*' => [0b00000, 0b10101, 0b01110, 0b11111, 0b01110, 0b10101, 0b00000],
        '<' => [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010],
        '>' => [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000],
        '!' => [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100],
        '|' => [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        '#' => [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010],
        '\'' => [0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000],
        '×' => [0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000],
        '·' => [0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000],
        // '?', and every character without a bitmap of its own.
        _ => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100],
    }
}

/// Maps data coordinates to pixels inside a plot frame.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f32,
    top: f32,
    right: f32,
    bottom: f32,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

impl Frame {
    fn pixel_of(&self, x: f64, y: f64) -> (f32, f32) {
        let tx = (x - self.x_range.0) / (self.x_range.1 - self.x_range.0);
        let ty = (y - self.y_range.0) / (self.y_range.1 - self.y_range.0);
        (
            self.left + (self.right - self.left) * tx as f32,
            self.bottom - (self.bottom - self.top) * ty as f32,
        )
    }

    /// Grid lines, tick labels and the frame border.
    fn draw_axes(&self, canvas: &mut Canvas, x_step: f64, y_step: f64) {
        for value in ticks(self.x_range, x_step) {
            let (px, _) = self.pixel_of(value, self.y_range.0);
            let px = px.round() as i64;
            canvas.fill_rect(px, self.top as i64, px + 1, self.bottom as i64, GRID);
            let label = format_tick(value, x_step);
            let half = Canvas::text_width(&label, 1) / 2;
            canvas.text(px - half, self.bottom as i64 + 6, &label, AXIS, 1);
        }
        for value in ticks(self.y_range, y_step) {
            let (_, py) = self.pixel_of(self.x_range.0, value);
            let py = py.round() as i64;
            canvas.fill_rect(self.left as i64, py, self.right as i64, py + 1, GRID);
            let label = format_tick(value, y_step);
            let width = Canvas::text_width(&label, 1);
            canvas.text(self.left as i64 - 6 - width, py - 3, &label, AXIS, 1);
        }
        let (l, t, r, b) = (self.left as i64, self.top as i64, self.right as i64, self.bottom as i64);
        canvas.fill_rect(l, t, r + 1, t + 1, AXIS);
        canvas.fill_rect(l, b, r + 1, b + 1, AXIS);
        canvas.fill_rect(l, t, l + 1, b + 1, AXIS);
        canvas.fill_rect(r, t, r + 1, b + 1, AXIS);
    }
}

/// Multiples of `step` inside `range`.
fn ticks((lo, hi): (f64, f64), step: f64) -> Vec<f64> {
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A 1-2-5 step (1, 2 or 5 × 10ᵏ) giving about `target` ticks over `span`; shared with other
/// plots in the workspace (e.g. `kiln bench --plot`).
pub fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * magnitude >= raw)
        .unwrap_or(10.0);
    nice * magnitude
}

/// A tick label for `value` with enough decimals to tell ticks `step` apart, no more.
pub fn format_tick(value: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let text = format!("{value:.decimals$}");
    if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        "0".into() // not "-0.0"
    } else {
        text
    }
}

/// Title centred above the plot frame.
fn draw_title(canvas: &mut Canvas, title: &str) {
    let width = Canvas::text_width(title, 2);
    canvas.text((canvas.width as i64 - width) / 2, 8, title, BLACK, 2);
}

/// Legend entries (colour swatch + name) stacked in the top-right corner of `frame`.
fn draw_legend(canvas: &mut Canvas, frame: &Frame, entries: &[(&str, Rgb)]) {
    let text_width = entries
        .iter()
        .map(|(name, _)| Canvas::text_width(name, 1))
        .max()
        .unwrap_or(0);
    let box_width = 8 + 10 + 4 + text_width + 8;
    let box_height = 6 + entries.len() as i64 * 12 + 2;
    let right = frame.right as i64 - 6;
    let top = frame.top as i64 + 6;
    let left = right - box_width;
    canvas.fill_rect(left, top, right, top + box_height, WHITE);
    for (x0, y0, x1, y1) in [
        (left, top, right, top + 1),
        (left, top + box_height - 1, right, top + box_height),
        (left, top, left + 1, top + box_height),
        (right - 1, top, right, top + box_height),
    ] {
        canvas.fill_rect(x0, y0, x1, y1, [200, 200, 200]);
    }
    for (index, (name, color)) in entries.iter().enumerate() {
        let y = top + 6 + index as i64 * 12;
        canvas.fill_rect(left + 8, y, left + 18, y + 7, *color);
        canvas.text(left + 22, y, name, BLACK, 1);
    }
}

/// What [`scatter_plot`] draws: the real data, the generator's samples and the mode centres of
/// a 2-D data set, on the square `[-range, range]²`.
#[derive(Debug, Clone, Copy)]
pub struct Scatter<'a> {
    /// Title above the plot (e.g. `ring8 step 5000`).
    pub title: &'a str,
    /// Half-width of both axes: 3 for ring8, 5.5 for grid25.
    pub range: f32,
    /// Real samples, `[n, 2]` row-major, drawn light grey underneath.
    pub real: &'a [f32],
    /// Generated samples, `[m, 2]` row-major, drawn in colour on top.
    pub generated: &'a [f32],
    /// Mode centres, marked with a hollow circle.
    pub modes: &'a [[f32; 2]],
}

/// Rasterise a [`Scatter`] on a 512×512 canvas.
pub fn scatter_plot(scatter: &Scatter) -> Result<Canvas> {
    for (name, points) in [("real", scatter.real), ("generated", scatter.generated)] {
        if points.len() % 2 != 0 {
            return Err(Error::BadShape {
                op: "scatter_plot",
                msg: format!("{name} points must be [n, 2], got {} values", points.len()),
            });
        }
    }
    if !(scatter.range.is_finite() && scatter.range > 0.0) {
        return Err(Error::Invalid(format!(
            "scatter plot range must be positive, got {}",
            scatter.range
        )));
    }
    let mut canvas = Canvas::new(512, 512, WHITE);
    let range = scatter.range as f64;
    let frame = Frame {
        left: 44.0,
        top: 36.0,
        right: 500.0,
        bottom: 492.0,
        x_range: (-range, range),
        y_range: (-range, range),
    };
    let step = nice_step(2.0 * range, 6.0);
    frame.draw_axes(&mut canvas, step, step);

    let real_color = [190, 190, 190];
    let generated_color = PALETTE[3];
    for point in scatter.real.chunks_exact(2) {
        let (x, y) = frame.pixel_of(point[0] as f64, point[1] as f64);
        canvas.disc(x, y, 1.6, real_color, 0.8);
    }
    for point in scatter.generated.chunks_exact(2) {
        let (x, y) = frame.pixel_of(point[0] as f64, point[1] as f64);
        canvas.disc(x, y, 1.6, generated_color, 0.55);
    }
    for mode in scatter.modes {
        let (x, y) = frame.pixel_of(mode[0] as f64, mode[1] as f64);
        canvas.circle(x, y, 7.0, 1.5, BLACK);
    }
    draw_title(&mut canvas, scatter.title);
    draw_legend(
        &mut canvas,
        &frame,
        &[("real", real_color), ("generated", generated_color), ("modes", BLACK)],
    );
    Ok(canvas)
}

/// Rasterise a [`Scatter`] and write it to `path` as PNG, atomically.
pub fn write_scatter_plot(path: impl AsRef<Path>, scatter: &Scatter) -> Result<()> {
    scatter_plot(scatter)?.write_png(path)
}

/// One named curve of a [`loss_plot`]: `(step, value)` points in step order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name, e.g. `loss_d`.
    pub name: String,
    /// `(step, value)` pairs; non-finite values are skipped (the curve breaks there).
    pub points: Vec<(f64, f64)>,
}

/// Rasterise loss curves on a 720×420 canvas: x = step, y auto-ranged over all finite values
/// of all series, each series in its own colour with a legend.
pub fn loss_plot(title: &str, series: &[Series]) -> Result<Canvas> {
    let finite = |(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let all = || series.iter().flat_map(|s| s.points.iter()).filter(|p| finite(p));
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = all().fold(
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    if x_lo > x_hi {
        (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0); // nothing to plot: empty axes
    }
    if x_hi - x_lo < 1e-12 {
        (x_lo, x_hi) = (x_lo - 1.0, x_hi + 1.0);
    }
    if y_hi - y_lo < 1e-12 {
        (y_lo, y_hi) = (y_lo - 1.0, y_hi + 1.0);
    }
    let y_pad = 0.05 * (y_hi - y_lo);
    let mut canvas = Canvas::new(720, 420, WHITE);
    let frame = Frame {
        left: 64.0,
        top: 36.0,
        right: 704.0,
        bottom: 392.0,
        x_range: (x_lo, x_hi),
        y_range: (y_lo - y_pad, y_hi + y_pad),
    };
    frame.draw_axes(
        &mut canvas,
        nice_step(x_hi - x_lo, 8.0),
        nice_step(y_hi - y_lo + 2.0 * y_pad, 6.0),
    );
    let mut legend = Vec::new();
    for (index, curve) in series.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let mut previous: Option<(f32, f32)> = None;
        for point in &curve.points {
            if !finite(point) {
                previous = None;
                continue;
            }
            let pixel = frame.pixel_of(point.0, point.1);
            match previous {
                Some(from) => canvas.line(from, pixel, 1.5, color),
                None => canvas.disc(pixel.0, pixel.1, 0.75, color, 1.0),
            }
            previous = Some(pixel);
        }
        legend.push((curve.name.as_str(), color));
    }
    draw_title(&mut canvas, title);
    canvas.text(
        frame.right as i64 - Canvas::text_width("step", 1),
        frame.bottom as i64 + 18,
        "step",
        AXIS,
        1,
    );
    if !legend.is_empty() {
        draw_legend(&mut canvas, &frame, &legend);
    }
    Ok(canvas)
}

/// Rasterise loss curves with [`loss_plot`] and write them to `path` as PNG, atomically.
pub fn write_loss_plot(path: impl AsRef<Path>, title: &str, series: &[Series]) -> Result<()> {
    loss_plot(title, series)?.write_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symbols_of_benchmark_names_have_glyphs() {
        // Layer cases (`x[64x100]@W^T[100x128]`) and kernel names drew their
        // brackets as `?` before.
        let unknown = glyph('\u{1}');
        for ch in "[]@^*<>!|#'×·()%/:=+,-._".chars() {
            assert_ne!(glyph(ch), unknown, "{ch:?}");
        }
        assert_eq!(glyph('?'), unknown);
    }

    #[test]
    fn nice_steps_are_1_2_5() {
        assert_eq!(nice_step(6.0, 6.0), 1.0);
        assert_eq!(nice_step(11.0, 6.0), 2.0);
        assert_eq!(nice_step(0.3, 6.0), 0.05);
        assert_eq!(nice_step(10_000.0, 8.0), 2000.0);
    }

    #[test]
    fn tick_labels_have_just_enough_decimals() {
        assert_eq!(format_tick(-2.0, 1.0), "-2");
        assert_eq!(format_tick(0.25, 0.05), "0.25");
        assert_eq!(format_tick(-0.0000001, 0.5), "0");
    }

    #[test]
    fn scatter_marks_generated_points_in_colour() {
        let canvas = scatter_plot(&Scatter {
            title: "t",
            range: 3.0,
            real: &[],
            generated: &[1.0, 1.0],
            modes: &[],
        })
        .unwrap();
        // (1, 1) maps to x = 44 + 456·4/6, y = 492 − 456·4/6.
        let pixel = canvas.pixel(348, 188).unwrap();
        assert!(pixel[0] > pixel[1] + 60, "{pixel:?}");
    }

    #[test]
    fn loss_plot_survives_nan_and_constant_series() {
        let series = vec![
            Series {
                name: "loss_d".into(),
                points: vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 1.0)],
            },
            Series {
                name: "loss_g".into(),
                points: vec![],
            },
        ];
        let canvas = loss_plot("losses", &series).unwrap();
        assert_eq!((canvas.width, canvas.height), (720, 420));
    }
}
