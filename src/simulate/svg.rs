//! The trade-off plot of `simulate --svg`: each judge's exposure (failed requests a bad candidate
//! costs users) against its false-rollback rate (good candidates it rolls back), as plain SVG.

use std::fmt::Write as _;

/// One judge on the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgePoint {
    pub judge: &'static str,
    /// Mean P(rollback) over the scenarios whose candidate is no worse than stable.
    pub false_rollback: f64,
    /// Mean extra failed requests per rollout over the scenarios whose candidate is worse.
    pub exposure: f64,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const BOTTOM: f64 = 60.0;
const TOP: f64 = 40.0;
const RIGHT: f64 = 30.0;
const COLOURS: [&str; 3] = ["#1b7837", "#b2182b", "#2166ac"];

/// The plot, axes starting at zero and ending a little past the largest value.
pub fn plot(points: &[JudgePoint]) -> String {
    let x_max = nice_ceiling(points.iter().map(|p| p.exposure).fold(0.0, f64::max));
    let y_max = nice_ceiling(points.iter().map(|p| p.false_rollback).fold(0.0, f64::max));
    let x = |v: f64| LEFT + v / x_max * (WIDTH - LEFT - RIGHT);
    let y = |v: f64| HEIGHT - BOTTOM - v / y_max * (HEIGHT - BOTTOM - TOP);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Exposure against false rollbacks, per judge (lower left is better)</text>"#,
        WIDTH / 2.0
    );
    for i in 0..=4 {
        let fraction = f64::from(i) / 4.0;
        let (gx, gy) = (x(x_max * fraction), y(y_max * fraction));
        let _ = writeln!(
            svg,
            r##"<line x1="{gx}" y1="{}" x2="{gx}" y2="{}" stroke="#ddd"/><text x="{gx}" y="{}" text-anchor="middle">{:.0}</text>"##,
            y(0.0),
            y(y_max),
            y(0.0) + 18.0,
            x_max * fraction
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{gy}" x2="{}" y2="{gy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{:.1}%</text>"##,
            x(0.0),
            x(x_max),
            x(0.0) - 6.0,
            gy + 4.0,
            y_max * fraction * 100.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">mean extra failed requests per rollout of a worse candidate</text>"#,
        (x(0.0) + x(x_max)) / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">good candidates rolled back</text>"#,
        (y(0.0) + y(y_max)) / 2.0
    );
    for (i, point) in points.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let (px, py) = (x(point.exposure), y(point.false_rollback));
        let _ = writeln!(
            svg,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="7" fill="{colour}"/><text x="{:.1}" y="{:.1}" fill="{colour}">{} ({:.0}, {:.1}%)</text>"#,
            px + 11.0,
            py + 4.0,
            point.judge,
            point.exposure,
            point.false_rollback * 100.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `value` (and above zero).
fn nice_ceiling(value: f64) -> f64 {
    if !(value.is_finite() && value > 0.0) {
        return 1.0;
    }
    let scale = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .find(|&candidate| candidate >= value * 1.05)
        .unwrap_or(10.0 * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_judge_gets_a_labelled_point_inside_the_plot() {
        let svg = plot(&[
            JudgePoint {
                judge: "sequential",
                false_rollback: 0.001,
                exposure: 40.0,
            },
            JudgePoint {
                judge: "threshold",
                false_rollback: 0.3,
                exposure: 120.0,
            },
        ]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(
            svg.contains(">sequential (40, 0.1%)<") && svg.contains(">threshold (120, 30.0%)<")
        );
    }

    #[test]
    fn axes_end_on_round_numbers_past_the_data() {
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
