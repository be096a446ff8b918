//! Bar charts as SVG, written by hand: one horizontal bar per peer, grouped
//! by measure, the bar at the median and a whisker from the smallest to the
//! largest run. Every bar carries its peer's name and its value, so the
//! chart reads without a legend.

use std::fmt::Write as _;

/// One peer's figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// The peer's name.
    pub peer: String,
    /// Median.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
}

/// The bars of one measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The measure's name.
    pub label: String,
    /// One bar per peer that has a figure.
    pub bars: Vec<Bar>,
}

/// A whole chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// Unit of every value.
    pub unit: String,
    /// A line under the title (which way is better, how it was measured).
    pub note: String,
    /// The groups, top to bottom.
    pub groups: Vec<Group>,
    /// A logarithmic axis, for figures that differ by orders of magnitude.
    pub log_scale: bool,
}

/// The colour of a peer's bars: socks5d stands out, direct is grey.
pub fn color(peer: &str) -> &'static str {
    match peer {
        "socks5d" => "#e8590c",
        "socks5d-rules1000" => "#f59f00",
        "direct" => "#868e96",
        "microsocks" => "#1c7ed6",
        "dante" => "#2f9e44",
        "dante-noauth" => "#66a80f",
        _ => "#7048e8",
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A value with as many digits as it deserves.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An axis label: no trailing zeros.
pub fn fmt_tick(v: f64) -> String {
    if v >= 1000.0 {
        return fmt_value(v);
    }
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Where values go on the axis: linear from 0, or by powers of ten.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Linear { max: f64 },
    Log { lo: f64, hi: f64 },
}

impl Scale {
    fn of(c: &Chart) -> Scale {
        let values = || {
            c.groups
                .iter()
                .flat_map(|g| g.bars.iter())
                .flat_map(|b| [b.min, b.median, b.max])
                .filter(|v| v.is_finite())
        };
        let top = values().fold(0.0, f64::max);
        if !c.log_scale {
            return Scale::Linear {
                max: nice_ceiling(top),
            };
        }
        let low = values().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let lo = if low.is_finite() {
            10f64.powf(low.log10().floor())
        } else {
            1.0
        };
        let hi = 10f64.powf(top.max(lo * 10.0).log10().ceil());
        Scale::Log { lo, hi }
    }

    /// 0 to 1 along the axis.
    fn fraction(self, v: f64) -> f64 {
        let f = match self {
            Scale::Linear { max } => v / max,
            Scale::Log { lo, hi } if v > 0.0 => (v / lo).log10() / (hi / lo).log10(),
            Scale::Log { .. } => 0.0,
        };
        f.clamp(0.0, 1.0)
    }

    fn ticks(self) -> Vec<f64> {
        match self {
            Scale::Linear { max } => (0..=5).map(|i| max * i as f64 / 5.0).collect(),
            Scale::Log { lo, hi } => {
                let n = (hi / lo).log10().round() as i32;
                (0..=n).map(|i| lo * 10f64.powi(i)).collect()
            }
        }
    }
}

/// `s` with the characters XML reserves escaped.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Starts an SVG document `width` by `height` on white, `title` and
/// `note` at its top left.
pub fn open_document(s: &mut String, width: f64, height: f64, title: &str, note: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="16" y="28" font-size="19" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="50" font-size="13" fill="#495057">{}</text>"##,
        esc(note)
    );
}

const WIDTH: f64 = 900.0;
const X0: f64 = 190.0;
const PLOT_W: f64 = 580.0;
const TOP: f64 = 84.0;
const BAR_H: f64 = 18.0;
const BAR_GAP: f64 = 5.0;
const GROUP_HEAD: f64 = 24.0;
const GROUP_GAP: f64 = 14.0;

/// The chart as an SVG document.
pub fn render(c: &Chart) -> String {
    let scale = Scale::of(c);
    let x = |v: f64| X0 + scale.fraction(v) * PLOT_W;
    let bars: usize = c.groups.iter().map(|g| g.bars.len().max(1)).sum();
    let height = TOP
        + c.groups.len() as f64 * (GROUP_HEAD + GROUP_GAP)
        + bars as f64 * (BAR_H + BAR_GAP)
        + 16.0;

    let mut s = String::new();
    open_document(&mut s, WIDTH, height, &c.title, &c.note);
    // Grid and axis labels.
    let bottom = height - 12.0;
    for v in scale.ticks() {
        let gx = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{:.1}" x2="{gx:.1}" y2="{bottom:.1}" stroke="#dee2e6"/>"##,
            TOP - 8.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{:.1}" font-size="11" fill="#495057" text-anchor="middle">{}</text>"##,
            TOP - 12.0,
            fmt_tick(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#495057">{}</text>"##,
        X0 + PLOT_W + 30.0,
        TOP - 12.0,
        esc(&c.unit)
    );
    let mut y = TOP;
    for g in &c.groups {
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
            y + 16.0,
            esc(&g.label)
        );
        y += GROUP_HEAD;
        if g.bars.is_empty() {
            let _ = writeln!(
                s,
                r##"<text x="{X0}" y="{:.1}" font-size="12" fill="#868e96">no figure</text>"##,
                y + 13.0
            );
            y += BAR_H + BAR_GAP;
        }
        for b in &g.bars {
            let mid = y + BAR_H / 2.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
                X0 - 8.0,
                mid + 4.0,
                esc(&b.peer)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{X0}" y="{y:.1}" width="{:.1}" height="{BAR_H}" fill="{}"/>"#,
                x(b.median) - X0,
                color(&b.peer)
            );
            let (x1, x2) = (x(b.min), x(b.max));
            if x2 - x1 >= 1.0 {
                let _ = writeln!(
                    s,
                    r##"<path d="M{x1:.1} {mid:.1}H{x2:.1}M{x1:.1} {:.1}V{:.1}M{x2:.1} {:.1}V{:.1}" stroke="#212529" stroke-width="1.2" fill="none"/>"##,
                    mid - 5.0,
                    mid + 5.0,
                    mid - 5.0,
                    mid + 5.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
                x(b.median).max(x2) + 6.0,
                mid + 4.0,
                esc(&fmt_value(b.median))
            );
            y += BAR_H + BAR_GAP;
        }
        y += GROUP_GAP;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_scales() {
        assert_eq!(nice_ceiling(0.87), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12_000.0), 20_000.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn scales() {
        let chart = |log_scale, values: &[f64]| Chart {
            title: String::new(),
            unit: String::new(),
            note: String::new(),
            groups: vec![Group {
                label: String::new(),
                bars: values
                    .iter()
                    .map(|v| Bar {
                        peer: "p".into(),
                        median: *v,
                        min: *v,
                        max: *v,
                    })
                    .collect(),
            }],
            log_scale,
        };
        let lin = Scale::of(&chart(false, &[0.5, 3.3]));
        assert_eq!(lin, Scale::Linear { max: 5.0 });
        assert_eq!(lin.ticks(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(lin.fraction(2.5), 0.5);
        let log = Scale::of(&chart(true, &[0.52, 12.9, 388.0]));
        assert_eq!(
            log,
            Scale::Log {
                lo: 0.1,
                hi: 1000.0
            }
        );
        assert_eq!(log.ticks().len(), 5);
        assert!((log.fraction(10.0) - 0.5).abs() < 1e-9);
        assert_eq!(log.fraction(0.0), 0.0);
        assert_eq!(fmt_tick(0.0), "0");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(0.1), "0.1");
        assert_eq!(fmt_tick(20_000.0), "20,000");
    }

    #[test]
    fn values_read_well() {
        assert_eq!(fmt_value(12_345.6), "12,346");
        assert_eq!(fmt_value(1_000.0), "1,000");
        assert_eq!(fmt_value(999.4), "999");
        assert_eq!(fmt_value(25.34), "25.3");
        assert_eq!(fmt_value(2.345), "2.35");
        assert_eq!(fmt_value(-0.5), "-0.50");
    }

    #[test]
    fn a_chart_has_every_bar_and_escapes_text() {
        let chart = Chart {
            title: "Throughput <1 tunnel>".into(),
            unit: "GiB/s".into(),
            note: "higher is better".into(),
            groups: vec![
                Group {
                    label: "upload".into(),
                    bars: vec![
                        Bar {
                            peer: "direct".into(),
                            median: 3.0,
                            min: 2.8,
                            max: 3.3,
                        },
                        Bar {
                            peer: "socks5d".into(),
                            median: 2.0,
                            min: 2.0,
                            max: 2.0,
                        },
                    ],
                },
                Group {
                    label: "download".into(),
                    bars: vec![],
                },
            ],
            log_scale: false,
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Throughput &lt;1 tunnel&gt;"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        // A whisker only where the runs differ.
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.contains(">3.00<") && svg.contains(">no figure<"));
        // Scale 0..5 for a largest value of 3.3.
        assert!(svg.contains(">5<"));
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }
}
