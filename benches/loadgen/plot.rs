//! Line charts as SVG, written by hand: panels stacked over one shared x
//! axis (open tunnels, in `loadgen scale`), each with its own y axis from
//! zero, its series drawn as lines through labelled points. Points apart
//! from the lines (memory after closing every tunnel) are drawn as open
//! markers.

use std::fmt::Write as _;

use crate::svg::{esc, fmt_tick, fmt_value, nice_ceiling, open_document};

/// One series of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// (x, y) points, in x order; non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
    /// Points shown as open markers, not joined to the line.
    pub apart: Vec<(f64, f64)>,
    /// A dashed line (a reference, not the subject).
    pub dashed: bool,
}

/// One panel: a y axis and its series.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Unit of the y axis.
    pub unit: String,
    /// The series.
    pub series: Vec<Series>,
}

/// A whole figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Title.
    pub title: String,
    /// A line under the title.
    pub note: String,
    /// What the x axis is.
    pub x_label: String,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
}

const WIDTH: f64 = 900.0;
const X0: f64 = 90.0;
const PLOT_W: f64 = 640.0;
const TOP: f64 = 70.0;
const PANEL_H: f64 = 190.0;
const PANEL_HEAD: f64 = 30.0;
const PANEL_GAP: f64 = 46.0;

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// The figure as an SVG document.
pub fn render(f: &Figure) -> String {
    let all = || {
        f.panels
            .iter()
            .flat_map(|p| p.series.iter())
            .flat_map(|s| s.points.iter().chain(s.apart.iter()))
            .filter(|p| finite(p))
    };
    let x_max = nice_ceiling(all().map(|p| p.0).fold(0.0, f64::max));
    let x = |v: f64| X0 + (v / x_max).clamp(0.0, 1.0) * PLOT_W;
    let height = TOP + f.panels.len() as f64 * (PANEL_HEAD + PANEL_H + PANEL_GAP) + 10.0;

    let mut s = String::new();
    open_document(&mut s, WIDTH, height, &f.title, &f.note);
    let mut top = TOP;
    for p in &f.panels {
        panel(&mut s, p, top + PANEL_HEAD, &x, x_max, &f.x_label);
        top += PANEL_HEAD + PANEL_H + PANEL_GAP;
    }
    s.push_str("</svg>\n");
    s
}

fn dash(s: &Series) -> &'static str {
    if s.dashed {
        r#" stroke-dasharray="5 4""#
    } else {
        ""
    }
}

/// Draws one panel whose plot area starts at `y0`.
fn panel(s: &mut String, p: &Panel, y0: f64, x: &dyn Fn(f64) -> f64, x_max: f64, x_label: &str) {
    let y_max = nice_ceiling(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().chain(s.apart.iter()))
            .filter(|p| finite(p))
            .map(|p| p.1)
            .fold(0.0, f64::max),
    );
    let bottom = y0 + PANEL_H;
    let y = |v: f64| bottom - (v / y_max).clamp(0.0, 1.0) * PANEL_H;
    let _ = writeln!(
        s,
        r##"<text x="16" y="{:.1}" font-size="14" font-weight="bold">{} <tspan font-weight="normal" fill="#495057">({})</tspan></text>"##,
        y0 - 12.0,
        esc(&p.title),
        esc(&p.unit)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let gy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{X0}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#dee2e6"/>"##,
            X0 + PLOT_W
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#495057" text-anchor="end">{}</text>"##,
            X0 - 6.0,
            gy + 4.0,
            fmt_tick(v)
        );
    }
    for i in 0..=5 {
        let v = x_max * f64::from(i) / 5.0;
        let gx = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{y0:.1}" x2="{gx:.1}" y2="{bottom:.1}" stroke="#f1f3f5"/>"##
        );
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{:.1}" font-size="11" fill="#495057" text-anchor="middle">{}</text>"##,
            bottom + 15.0,
            fmt_tick(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#495057" text-anchor="middle">{}</text>"##,
        X0 + PLOT_W / 2.0,
        bottom + 30.0,
        esc(x_label)
    );
    // Where value labels went: a label that would overlap one goes under
    // its point instead, or is left out (its value is in the report).
    let mut labels: Vec<(f64, f64)> = Vec::new();
    for (i, series) in p.series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = series.points.iter().copied().filter(finite).collect();
        if pts.len() > 1 {
            let d: Vec<String> = pts
                .iter()
                .enumerate()
                .map(|(k, (px, py))| {
                    format!(
                        "{}{:.1} {:.1}",
                        if k == 0 { 'M' } else { 'L' },
                        x(*px),
                        y(*py)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<path d="{}" stroke="{}" stroke-width="2" fill="none"{}/>"#,
                d.join(""),
                series.color,
                dash(series)
            );
        }
        for (px, py) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                x(*px),
                y(*py),
                series.color
            );
            let free = |ly: f64| {
                labels
                    .iter()
                    .all(|(ox, oy)| (ox - x(*px)).abs() >= 32.0 || (oy - ly).abs() >= 11.0)
            };
            let Some(ly) = [y(*py) - 7.0, y(*py) + 15.0]
                .into_iter()
                .find(|ly| free(*ly))
            else {
                continue;
            };
            labels.push((x(*px), ly));
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ly:.1}" font-size="10" fill="{}" text-anchor="middle">{}</text>"#,
                x(*px),
                series.color,
                fmt_value(*py)
            );
        }
        for (px, py) in series.apart.iter().filter(|p| finite(p)) {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="white" stroke="{}" stroke-width="2"/>"#,
                x(*px),
                y(*py),
                series.color
            );
        }
        // Legend, right of the plot.
        let ly = y0 + 14.0 + i as f64 * 18.0;
        let lx = X0 + PLOT_W + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{}/>"#,
            ly - 4.0,
            lx + 16.0,
            ly - 4.0,
            series.color,
            dash(series)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}" font-size="11">{}</text>"#,
            lx + 20.0,
            esc(&series.name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure() -> Figure {
        Figure {
            title: "Scale <100k>".into(),
            note: "note".into(),
            x_label: "open tunnels".into(),
            panels: vec![
                Panel {
                    title: "memory".into(),
                    unit: "MiB".into(),
                    series: vec![Series {
                        name: "PSS".into(),
                        color: "#e8590c",
                        points: vec![(0.0, 1.0), (10_000.0, 6.5), (100_000.0, 56.0)],
                        apart: vec![(0.0, 1.2)],
                        dashed: false,
                    }],
                },
                Panel {
                    title: "handshakes".into(),
                    unit: "cycles/s".into(),
                    series: vec![Series {
                        name: "rate".into(),
                        color: "#1c7ed6",
                        points: vec![(0.0, 1500.0), (f64::NAN, 1.0), (100_000.0, 1400.0)],
                        apart: vec![],
                        dashed: true,
                    }],
                },
            ],
        }
    }

    #[test]
    fn labels_that_would_overlap_move_under_or_go() {
        let close = |name: &str, y: f64| Series {
            name: name.into(),
            color: "#000000",
            points: vec![(0.0, y), (100.0, y)],
            apart: vec![],
            dashed: false,
        };
        let f = Figure {
            title: String::new(),
            note: String::new(),
            x_label: String::new(),
            panels: vec![Panel {
                title: String::new(),
                unit: String::new(),
                series: vec![close("a", 50.0), close("b", 50.5), close("c", 49.5)],
            }],
        };
        let svg = render(&f);
        // Two labels a point: above (a) and under (b); c's are left out.
        assert_eq!(svg.matches(">50.0<").count(), 2, "{svg}");
        assert_eq!(svg.matches(">50.5<").count(), 2);
        assert_eq!(svg.matches(">49.5<").count(), 0);
        assert_eq!(svg.matches("<circle").count(), 6);
    }

    #[test]
    fn every_point_is_drawn_and_text_escaped() {
        let svg = render(&figure());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Scale &lt;100k&gt;"));
        // 3 + 2 points (the NaN one left out), 1 open marker.
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches(r#"fill="white" stroke="#).count(), 1);
        assert_eq!(svg.matches("<path").count(), 2);
        // The dashed series' line and its legend.
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        // x axis to 100,000; y axes to 100 MiB and 2,000 cycles/s.
        assert!(svg.contains(">100,000<") && svg.contains(">100<") && svg.contains(">2,000<"));
        assert!(svg.contains(">56.0<") && svg.contains(">1,400<"));
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }
}
