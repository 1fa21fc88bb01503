//! Line charts as SVG, written by hand: deterministic bytes (a report directory stays
//! byte-identical for a seed), no font or system library needed, readable in any browser.
//!
//! A [`Chart`] has a title, axis labels and series of `(x, y)` points drawn as step-free
//! polylines over light grid lines at "nice" tick values (1, 2 or 5 times a power of ten),
//! with a legend. Long series are thinned to at most [`MAX_POINTS`] points, keeping each
//! bucket's extreme so peaks stay visible.

use std::fmt::Write as _;

/// Points per series kept in a chart.
pub const MAX_POINTS: usize = 1500;

const W: f64 = 860.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Colour-blind-safe palette (Okabe & Ito).
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// How the y axis reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YAxis {
    /// Values in [0, 1] shown as 0–100 %.
    Percent,
    /// Counts or amounts from zero up.
    Count,
}

/// One line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub y: YAxis,
    pub series: Vec<Series>,
}

/// 1, 2 or 5 times a power of ten, at least `x`.
fn nice_step(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= x {
            return m * p;
        }
    }
    10.0 * p
}

/// Tick values from `lo` to at least `hi`, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let step = nice_step((hi - lo) / n.max(1) as f64);
    let first = (lo / step).floor() * step;
    let mut v = Vec::new();
    let mut t = first;
    while t <= hi + step * 0.5 && v.len() < 50 {
        v.push(t);
        t += step;
    }
    if v.len() < 2 {
        v.push(first + step);
    }
    v
}

/// Compact label: integers plainly, else up to 2 decimals, trailing zeros dropped.
fn label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        let r = v.round();
        if r.abs() >= 1e6 {
            return format!("{:.1}M", r / 1e6).replace(".0M", "M");
        }
        if r.abs() >= 1e4 {
            return format!("{:.1}k", r / 1e3).replace(".0k", "k");
        }
        return format!("{r:.0}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About `max` points: each bucket of consecutive points gives its first point and its
/// lowest and highest points (in x order, each once), so peaks and dips stay visible.
fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil((max / 3).max(1));
    let mut out = Vec::with_capacity(max + 1);
    for chunk in points.chunks(per) {
        let first = (0, chunk[0]);
        let (mut lo, mut hi) = (first, first);
        for (k, &p) in chunk.iter().enumerate() {
            if p.1 < lo.1 .1 {
                lo = (k, p);
            }
            if p.1 > hi.1 .1 {
                hi = (k, p);
            }
        }
        let mut picks = [first, lo, hi];
        picks.sort_by_key(|(k, _)| *k);
        for (i, (k, p)) in picks.iter().enumerate() {
            if i == 0 || *k != picks[i - 1].0 {
                out.push(*p);
            }
        }
    }
    if let Some(&last) = points.last() {
        if out.last() != Some(&last) {
            out.push(last);
        }
    }
    out
}

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let pts: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                thin(
                    &s.points
                        .iter()
                        .copied()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                        .collect::<Vec<_>>(),
                    MAX_POINTS,
                )
            })
            .collect();
        let all = pts.iter().flatten();
        let (mut x0, mut x1) = all
            .clone()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ymax = all.map(|p| p.1).fold(0.0f64, f64::max);
        let y1 = match self.y {
            YAxis::Percent => 1.0f64.max(ymax),
            YAxis::Count if ymax > 0.0 => ymax,
            YAxis::Count => 1.0,
        };
        let xt = ticks(x0, x1, 8);
        let yt = ticks(0.0, y1, 5);
        let (x0, x1) = (x0.min(xt[0]), x1.max(*xt.last().unwrap_or(&x1)));
        let y1 = y1.max(*yt.last().unwrap_or(&y1));
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - y / y1 * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\n\
             <style>text{{font-family:sans-serif;font-size:12px;fill:#222}}.t{{font-size:15px;font-weight:bold}}</style>\n\
             <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
             <text class=\"t\" x=\"{LEFT}\" y=\"24\">{}</text>\n",
            escape(&self.title)
        );
        for &t in &yt {
            let y = sy(t);
            let text = match self.y {
                YAxis::Percent => format!("{}%", label(t * 100.0)),
                YAxis::Count => label(t),
            };
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{text}</text>",
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0
            );
        }
        for &t in &xt {
            let x = sx(t);
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + ph,
                TOP + ph + 16.0,
                label(t)
            );
        }
        let _ = writeln!(
            s,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text transform=\"translate(16,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            LEFT + pw / 2.0,
            H - 12.0,
            escape(&self.x_label),
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for (i, (series, p)) in self.series.iter().zip(&pts).enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            if !p.is_empty() {
                let mut d = String::new();
                for (x, y) in p {
                    let _ = write!(d, "{:.1},{:.1} ", sx(*x), sy(*y));
                }
                let _ = writeln!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\" points=\"{}\"/>",
                    d.trim_end()
                );
            }
            let ly = TOP + 10.0 + 20.0 * i as f64;
            let lx = LEFT + pw + 14.0;
            let _ = writeln!(
                s,
                "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Seconds of trace time in the unit that reads best for a span: (divisor, axis label).
pub fn time_unit(span_seconds: f64) -> (f64, &'static str) {
    if span_seconds >= 3.0 * 86400.0 {
        (86400.0, "trace time (days)")
    } else if span_seconds >= 3.0 * 3600.0 {
        (3600.0, "trace time (hours)")
    } else if span_seconds >= 180.0 {
        (60.0, "trace time (minutes)")
    } else {
        (1.0, "trace time (seconds)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(0.0, 37.0, 5), vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(label(0.6000000000000001 * 100.0), "60");
        assert_eq!(label(12_500.0), "12.5k");
        assert_eq!(label(2_000_000.0), "2M");
        assert_eq!(label(0.25), "0.25");
    }

    #[test]
    fn thinning_keeps_peaks_and_ends() {
        let pts: Vec<(f64, f64)> = (0..10_000)
            .map(|i| {
                let y = match i {
                    5_001 => 99.0,
                    7_001 => -5.0,
                    _ => 1.0,
                };
                (i as f64, y)
            })
            .collect();
        let t = thin(&pts, 100);
        assert!(t.len() <= 102, "{}", t.len());
        assert!(t.contains(&(5001.0, 99.0)), "peaks stay");
        assert!(t.contains(&(7001.0, -5.0)), "dips stay");
        assert_eq!(t.first(), Some(&(0.0, 1.0)));
        assert_eq!(t.last(), Some(&(9999.0, 1.0)));
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_chart_is_an_svg_with_every_series_named() {
        let c = Chart {
            title: "GPU <allocation>".into(),
            x_label: "time".into(),
            y_label: "share".into(),
            y: YAxis::Percent,
            series: vec![
                Series {
                    name: "binpack".into(),
                    points: vec![(0.0, 0.1), (10.0, 0.5), (20.0, 0.25)],
                },
                Series {
                    name: "spread".into(),
                    points: vec![],
                },
            ],
        };
        let s = c.svg();
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("GPU &lt;allocation&gt;"));
        assert!(s.contains(">binpack</text>") && s.contains(">spread</text>"));
        assert_eq!(s.matches("<polyline").count(), 1);
        assert!(s.contains(">100%</text>") && s.contains(">0%</text>"));
        assert_eq!(s, c.svg(), "deterministic");
    }
}
