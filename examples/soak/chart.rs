//! The soak's plot, written by hand: RSS and open descriptors over
//! minutes, two line charts, warm-up shaded.

use std::fmt::Write as _;

use crate::Sample;

/// One chart: its name, its unit, and the value it plots.
type Panel = (&'static str, &'static str, fn(&Sample) -> f64);

/// Two line charts, RSS and descriptors over minutes, warm-up shaded.
pub fn svg(samples: &[Sample], warmup_s: f64, title: &str, subtitle: &str) -> String {
    const W: f64 = 900.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const PANEL: f64 = 200.0;
    const TOP: f64 = 70.0;
    const GAP: f64 = 60.0;
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
    let mut out = String::new();
    let h = TOP + 2.0 * PANEL + GAP + 50.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="16">{}</text>"#,
        xml(title)
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="40" font-size="11">{}</text>"#,
        xml(subtitle)
    );
    let panels: [Panel; 2] = [
        ("RSS", "MiB", |s| s.rss_kib as f64 / 1024.0),
        ("open descriptors", "", |s| s.fds as f64),
    ];
    for (i, (name, unit, value)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let bottom = top + PANEL;
        let hi = samples.iter().map(value).fold(f64::MIN, f64::max).max(1.0) * 1.1;
        let y = |v: f64| bottom - PANEL * v / hi;
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL}" fill="#eee"/>"##,
            (x(warmup_s.min(t_max)) - LEFT).max(0.0)
        );
        let _ = writeln!(
            out,
            r#"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL}" fill="none" stroke="black"/>"#,
            W - LEFT - RIGHT
        );
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{:.1}">{name}{}</text>"#,
            top - 8.0,
            if unit.is_empty() {
                String::new()
            } else {
                format!(" ({unit})")
            }
        );
        for k in 0..=4 {
            let v = hi * f64::from(k) / 4.0;
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"#,
                LEFT - 6.0,
                y(v) + 4.0
            );
        }
        let points: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t), y(value(s))))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
    }
    let axis = TOP + 2.0 * PANEL + GAP;
    let minutes = t_max / 60.0;
    let step = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0]
        .into_iter()
        .find(|s| minutes / s <= 10.0)
        .unwrap_or(120.0);
    let mut m = 0.0;
    while m <= minutes + 1e-9 {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{m}</text>"#,
            x(m * 60.0),
            axis + 16.0
        );
        m += step;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes (warm-up shaded)</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        axis + 36.0
    );
    out.push_str("</svg>\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
