//! A PNG line plot of a benchmark report, drawn with kiln-gan's small rasteriser
//! ([`kiln_gan::plot::Canvas`]; no font or plotting dependency): rate against case, one
//! coloured line per implementation, the measured peak as a dashed line.

use super::{peak_for, BenchReport};
use kiln_gan::plot::{format_tick, nice_step, Canvas, Rgb, PALETTE};
use std::path::{Path, PathBuf};

const W: usize = 1000;
const H: usize = 620;
const LEFT: i64 = 80;
const RIGHT: i64 = W as i64 - 330;
const TOP: i64 = 40;
const BOTTOM: i64 = H as i64 - 70;

const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [220, 220, 220];
/// Colour of the measured-peak line.
const PEAK: Rgb = [200, 0, 0];

/// A horizontal line `thick` pixels high from `x0` to `x1` (inclusive) centred on `y`; with
/// `dash` > 0, runs of `dash` pixels alternate with gaps of the same length.
fn hline(cv: &mut Canvas, x0: i64, x1: i64, y: i64, thick: i64, dash: i64, c: Rgb) {
    let (top, step) = (y - thick / 2, if dash > 0 { 2 * dash } else { x1 - x0 + 1 });
    for x in (x0..=x1).step_by(step.max(1) as usize) {
        let end = if dash > 0 { (x + dash).min(x1 + 1) } else { x1 + 1 };
        cv.fill_rect(x, top, end, top + thick, c);
    }
}

/// Rasterises the rows of `report` timed in `unit` (at least one: [`write_plots`] asks only
/// for the units it found). Cases are spaced evenly on the x axis (labelled with their name, or
/// their index when the names are long).
fn render(report: &BenchReport, unit: &str) -> Canvas {
    let rows: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| m.rate().is_some() && m.unit == unit)
        .collect();
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
    let (pw, ph) = ((RIGHT - LEFT) as f64, (BOTTOM - TOP) as f64);
    let xpos = |i: usize| LEFT + ((i as f64 + 0.5) / cases.len() as f64 * pw) as i64;
    let ypos = |v: f64| (TOP as f64 + ph - v / ymax * ph).round() as i64;

    let mut cv = Canvas::new(W, H, [255, 255, 255]);
    let step = nice_step(ymax, 6.0);
    let mut t = 0.0;
    while t <= ymax {
        let y = ypos(t);
        hline(&mut cv, LEFT, RIGHT, y, 1, 0, GRID);
        let lab = format_tick(t, step);
        cv.text(LEFT - 8 - Canvas::text_width(&lab, 1), y - 3, &lab, BLACK, 1);
        t += step;
    }
    cv.fill_rect(LEFT, TOP, LEFT + 1, BOTTOM + 1, BLACK);
    cv.fill_rect(LEFT, BOTTOM, RIGHT + 1, BOTTOM + 1, BLACK);
    let short = cases.iter().all(|(_, c)| c.len() <= 16);
    for (i, (_, c)) in cases.iter().enumerate() {
        let lab = if short { c.clone() } else { format!("{}", i + 1) };
        let x = xpos(i);
        cv.fill_rect(x, BOTTOM, x + 1, BOTTOM + 5, BLACK);
        cv.text(x - Canvas::text_width(&lab, 1) / 2, BOTTOM + 10, &lab, BLACK, 1);
    }
    let gpu = report.machine.fma_isa == super::GPU_ISA;
    let on = if gpu {
        report.machine.cpu_model.clone()
    } else {
        format!("{} thread(s)", report.machine.threads)
    };
    let title = format!("kiln bench {} - {on} - {unit}", report.kernel);
    cv.text(LEFT, 12, &title, BLACK, 2);
    let xlabel = if short { "case" } else { "case (index, see table)" };
    cv.text(LEFT, H as i64 - 30, xlabel, BLACK, 1);

    // The measured peak, dashed.
    hline(&mut cv, LEFT, RIGHT, ypos(peak), 2, 8, PEAK);
    let peak_name = match (unit == "GFLOP/s", gpu) {
        (true, false) => "FMA peak",
        (false, false) => "copy BW",
        (true, true) => "FP32 peak",
        (false, true) => "DRAM peak",
    };
    let legend_x = RIGHT + 20;
    hline(&mut cv, legend_x, legend_x + 24, 50, 2, 6, PEAK);
    cv.text(legend_x + 32, 47, &format!("{peak_name} {peak:.0}"), BLACK, 1);

    let mut legend_y = 70;
    for (li, name) in impls.iter().enumerate() {
        let color = PALETTE[li % PALETTE.len()];
        // Past the palette the colours come round again, with dashed lines.
        let dashed = li >= PALETTE.len();
        let mut prev: Option<(f32, f32)> = None;
        for (ci, (size, case)) in cases.iter().enumerate() {
            let hit = rows
                .iter()
                .find(|m| m.implementation == *name && m.size == *size && m.case == *case);
            match hit.and_then(|m| m.rate()) {
                Some(r) => {
                    let p = (xpos(ci) as f32, ypos(r) as f32);
                    if let Some(q) = prev {
                        segment(&mut cv, q, p, dashed, color);
                    }
                    cv.disc(p.0, p.1, 3.5, color, 1.0);
                    prev = Some(p);
                }
                None => prev = None,
            }
        }
        let y = legend_y;
        if dashed {
            hline(&mut cv, legend_x, legend_x + 24, y, 5, 4, color);
        } else {
            cv.fill_rect(legend_x, y - 2, legend_x + 25, y + 3, color);
        }
        let lines = wrap(name, LEGEND_CHARS);
        for (i, line) in lines.iter().enumerate() {
            cv.text(legend_x + 32, y - 3 + 10 * i as i64, line, BLACK, 1);
        }
        legend_y = y + 16 + 10 * lines.len().saturating_sub(1) as i64;
    }
    cv
}

/// Characters of a legend line (the legend's width over the glyphs' 6 pixels).
const LEGEND_CHARS: usize = 42;

/// `text` in lines of at most `width` characters, broken after spaces where
/// there are any (a legend name was cut at 40 characters before).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    for word in text.split_inclusive(' ') {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.chars().count() + word.trim_end().chars().count() > width {
            lines.push(String::new());
        }
        let mut rest = word;
        loop {
            let last = lines.last_mut().unwrap();
            let room = width - last.chars().count();
            if rest.trim_end().chars().count() <= room {
                last.push_str(rest);
                break;
            }
            // A word longer than a line: split it.
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            last.push_str(&rest[..cut]);
            rest = &rest[cut..];
            lines.push(String::new());
        }
    }
    lines
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A series' segment from `q` to `p`: solid, or in 8-pixel dashes.
fn segment(cv: &mut Canvas, q: (f32, f32), p: (f32, f32), dashed: bool, color: Rgb) {
    if !dashed {
        cv.line(q, p, 2.0, color);
        return;
    }
    let len = ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt();
    let pieces = (len / 8.0).ceil().max(1.0) as usize;
    let at = |t: f32| (q.0 + (p.0 - q.0) * t, q.1 + (p.1 - q.1) * t);
    for i in (0..pieces).step_by(2) {
        let (t0, t1) = (i as f32 / pieces as f32, ((i + 1) as f32 / pieces as f32).min(1.0));
        cv.line(at(t0), at(t1), 2.0, color);
    }
}

/// Draws `report` as PNGs, one per unit of its timed rows: the first unit's
/// at `path`, any other's beside it with the unit in its name (`kiln bench
/// all --plot all.png` writes `all.png` for GFLOP/s and `all-GBs.png` for
/// GB/s; it drew the GFLOP/s rows alone before). Cases are spaced evenly on
/// the x axis (labelled with their size, or their index when the labels are
/// long). Returns the paths written.
pub(super) fn write_plots(report: &BenchReport, path: &Path) -> Result<Vec<PathBuf>, String> {
    let mut units: Vec<&str> = Vec::new();
    for m in report.measurements.iter().filter(|m| m.rate().is_some()) {
        if !units.contains(&m.unit) {
            units.push(m.unit);
        }
    }
    if units.is_empty() {
        return Err("nothing was timed, so there is nothing to plot".into());
    }
    let mut written = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        let at = if i == 0 { path.to_path_buf() } else { beside(path, unit) };
        render(report, unit)
            .write_png(&at)
            .map_err(|e| format!("cannot write plot {}: {e}", at.display()))?;
        written.push(at);
    }
    Ok(written)
}

/// `dir/name.ext` → `dir/name-GBs.ext` for the unit `GB/s`.
fn beside(path: &Path, unit: &str) -> PathBuf {
    let slug: String = unit.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let stem = path.file_stem().map_or("plot".into(), |s| s.to_string_lossy());
    let ext = path.extension().map_or("png".into(), |e| e.to_string_lossy());
    path.with_file_name(format!("{stem}-{slug}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::super::{MachineInfo, Measurement, Status, Timing};
    use super::*;

    #[test]
    fn legend_names_wrap_instead_of_being_cut() {
        let name = "sigmoid_backward + column sum of [n/256, 256] (act_backward_colsum, one pass, 12 B/elem)";
        let lines = wrap(name, LEGEND_CHARS);
        assert!(lines.iter().all(|l| l.chars().count() <= LEGEND_CHARS), "{lines:?}");
        assert_eq!(lines.join(" "), name);
        assert_eq!(wrap("relu", LEGEND_CHARS), ["relu"]);
        // A word longer than a line is split, nothing lost.
        let long = "x".repeat(50);
        assert_eq!(wrap(&long, 20).concat(), long);
        assert_eq!(wrap(&long, 20).len(), 3);
        assert_eq!(wrap("abc", 0), ["a", "b", "c"]);
        assert_eq!(wrap("abcde  f", 5), ["abcde", "f"]);
        assert!(wrap("   ", 5).is_empty());
    }

    fn measurement(implementation: &str, n: usize, seconds: f64) -> Measurement {
        Measurement {
            kernel: "gemm".into(),
            case: format!("{n}x{n}x{n}"),
            size: n,
            implementation: implementation.into(),
            status: Status::Ok,
            work: 2.0 * (n * n * n) as f64,
            unit: "GFLOP/s",
            timing: Some(Timing::constant(seconds)),
            frac_of_peak: None,
            vs_reference: None,
        }
    }

    fn report() -> BenchReport {
        BenchReport {
            machine: MachineInfo {
                cpu_model: "test".into(),
                features: String::new(),
                logical_cpus: 1,
                threads: 1,
                fma_isa: "none".into(),
                fma_peak_1t: 100.0,
                fma_peak: 100.0,
                copy_gbs: 10.0,
            },
            kernel: "gemm".into(),
            // 2·64³ flops in 1e-5 s ≈ 52 GFLOP/s; 2·128³ in 1e-4 s ≈ 42 GFLOP/s.
            measurements: vec![
                measurement("naive", 64, 1e-5),
                measurement("naive", 128, 1e-4),
                measurement("blocked", 64, 2e-5),
                measurement("blocked", 128, 2e-4),
            ],
            notes: Vec::new(),
        }
    }

    #[test]
    fn each_unit_gets_its_own_plot() {
        // `kiln bench all`: GFLOP/s rows and GB/s rows.
        let mut r = report();
        let mut copy = measurement("copy", 1 << 20, 1e-4);
        copy.unit = "GB/s";
        r.measurements.push(copy);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.png");
        let written = write_plots(&r, &path).unwrap();
        assert_eq!(written, [path.clone(), dir.path().join("all-GBs.png")]);
        for p in &written {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", p.display());
        }
        // The two differ: each holds its own unit's rows.
        assert_ne!(std::fs::read(&written[0]).unwrap(), std::fs::read(&written[1]).unwrap());
    }

    #[test]
    fn plot_is_a_png_with_the_peak_line_and_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.png");
        assert_eq!(write_plots(&report(), &path).unwrap(), [path.clone()]);

        let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut px = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut px).unwrap();
        assert_eq!((info.width, info.height), (W as u32, H as u32));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let at = |x: usize, y: usize| -> Rgb {
            let i = (y * W + x) * 3;
            [px[i], px[i + 1], px[i + 2]]
        };
        // The peak (100) lies at ymax / 1.1, i.e. 1/1.1 of the plot height above the x axis.
        let ph = (BOTTOM - TOP) as f64;
        let peak_y = (TOP as f64 + ph - ph / 1.1).round() as usize;
        let peak_px = (LEFT as usize..=RIGHT as usize)
            .filter(|&x| at(x, peak_y) == PEAK)
            .count();
        // Dashed: roughly half of the row is peak-red, not all of it.
        let span = (RIGHT - LEFT) as usize;
        assert!(peak_px > span / 3 && peak_px < span * 2 / 3, "{peak_px} of {span}");
        // Both implementations are drawn in their palette colours.
        for color in &PALETTE[..2] {
            assert!(px.chunks_exact(3).any(|p| p == color), "{color:?} missing");
        }
    }

    /// The PNG at `path` as RGB bytes.
    fn pixels(path: &Path) -> Vec<u8> {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut px = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut px).unwrap();
        px
    }

    #[test]
    fn device_plot_puts_each_rate_on_its_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpu.png");
        let point = |case: &str, implementation: &str, rate: f64| crate::bench::PlotPoint {
            case: case.into(),
            implementation: implementation.into(),
            rate,
            unit: "GFLOP/s",
        };
        let points = [
            point("a", "x", 50.0),
            point("a", "y", 20.0),
            point("b", "x", 60.0),
            point("b", "y", 30.0),
        ];
        crate::bench::write_device_plot("GPU", "gemm", (100.0, 1.0), &points, &path).unwrap();
        let px = pixels(&path);
        let at = |x: i64, y: i64| -> Rgb {
            let i = (y as usize * W + x as usize) * 3;
            [px[i], px[i + 1], px[i + 2]]
        };
        // Two cases (not four): case i sits at (i + 0.5)/2 of the width; the y axis ends at
        // 1.1 × the peak of 100.
        let (pw, ph) = ((RIGHT - LEFT) as f64, (BOTTOM - TOP) as f64);
        let x = |i: f64| LEFT + ((i + 0.5) / 2.0 * pw) as i64;
        let y = |v: f64| (TOP as f64 + ph - v / 110.0 * ph).round() as i64;
        assert_eq!(at(x(0.0), y(50.0)), PALETTE[0]);
        assert_eq!(at(x(1.0), y(60.0)), PALETTE[0]);
        assert_eq!(at(x(0.0), y(20.0)), PALETTE[1]);
        assert_eq!(at(x(1.0), y(30.0)), PALETTE[1]);
    }

    #[test]
    fn nothing_timed_is_an_error() {
        let mut r = report();
        r.measurements.iter_mut().for_each(|m| m.timing = None);
        assert!(write_plots(&r, Path::new("unused.png")).is_err());
    }
}
