//! The overview's charts as inline SVG made on the server: no script, no
//! external asset, readable in print. Every label goes through maud, so a
//! rule id or date cannot inject markup.

use chrono::NaiveDate;
use maud::{Markup, html};

/// Chart geometry in SVG user units; the SVG scales to its container.
const WIDTH: f64 = 640.0;
const BAR_HEIGHT: f64 = 22.0;
const BAR_GAP: f64 = 8.0;
/// Room for rule ids on the left and the count on the right.
const LABEL_WIDTH: f64 = 170.0;
const VALUE_WIDTH: f64 = 50.0;

/// A horizontal bar chart: one bar per `(label, value)`, scaled to the
/// largest value (an all-zero chart shows empty bars).
pub fn bar_chart(id: &str, title: &str, bars: &[(String, u64)]) -> Markup {
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let track = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
    let height = bars.len() as f64 * (BAR_HEIGHT + BAR_GAP) + BAR_GAP;
    html! {
        svg id=(id) class="chart" role="img" aria-label=(title)
            viewBox={ "0 0 " (WIDTH) " " (height) } xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for (index, (label, value)) in bars.iter().enumerate() {
                @let y = BAR_GAP + index as f64 * (BAR_HEIGHT + BAR_GAP);
                @let length = (*value as f64 / max * track).max(0.0);
                g class="bar" {
                    text x=(LABEL_WIDTH - 8.0) y=(y + BAR_HEIGHT * 0.7) text-anchor="end" { (label) }
                    rect class="track" x=(LABEL_WIDTH) y=(y) width=(track) height=(BAR_HEIGHT) {}
                    rect class="fill" x=(LABEL_WIDTH) y=(y) width=(format!("{length:.1}")) height=(BAR_HEIGHT) {}
                    text x=(LABEL_WIDTH + track + 8.0) y=(y + BAR_HEIGHT * 0.7) { (value) }
                }
            }
        }
    }
}

const LINE_HEIGHT: f64 = 220.0;
const MARGIN_LEFT: f64 = 48.0;
const MARGIN_RIGHT: f64 = 12.0;
const MARGIN_TOP: f64 = 12.0;
const MARGIN_BOTTOM: f64 = 28.0;

/// A line chart of shares (0 to 1) by day; a day without a value breaks
/// the line rather than pretending to know it. Axis: 0 %, 50 %, 100 %; the
/// first and last day labelled.
pub fn line_chart(id: &str, title: &str, days: &[(NaiveDate, Option<f64>)]) -> Markup {
    let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = LINE_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let step = if days.len() > 1 {
        plot_width / (days.len() - 1) as f64
    } else {
        0.0
    };
    let x = |index: usize| MARGIN_LEFT + index as f64 * step;
    let y = |share: f64| MARGIN_TOP + (1.0 - share.clamp(0.0, 1.0)) * plot_height;
    // Runs of consecutive known days, each one polyline.
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (index, (_, share)) in days.iter().enumerate() {
        match share {
            Some(share) => current.push((x(index), y(*share))),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    let points = |run: &[(f64, f64)]| {
        run.iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg id=(id) class="chart" role="img" aria-label=(title)
            viewBox={ "0 0 " (WIDTH) " " (LINE_HEIGHT) } xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for share in [0.0, 0.5, 1.0] {
                line class="grid" x1=(MARGIN_LEFT) x2=(WIDTH - MARGIN_RIGHT) y1=(y(share)) y2=(y(share)) {}
                text x=(MARGIN_LEFT - 6.0) y=(y(share) + 4.0) text-anchor="end" { (share * 100.0) " %" }
            }
            @if let (Some((first, _)), Some((last, _))) = (days.first(), days.last()) {
                text x=(MARGIN_LEFT) y=(LINE_HEIGHT - 8.0) { (first.format("%d %b")) }
                text x=(WIDTH - MARGIN_RIGHT) y=(LINE_HEIGHT - 8.0) text-anchor="end" { (last.format("%d %b")) }
            }
            @for run in &runs {
                @if run.len() == 1 {
                    circle class="point" cx=(format!("{:.1}", run[0].0)) cy=(format!("{:.1}", run[0].1)) r="3" {}
                } @else {
                    polyline class="line" points=(points(run)) {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_labels_are_escaped() {
        let svg = bar_chart(
            "c",
            "t",
            &[("<b>".to_owned(), 2), ("screen_lock".to_owned(), 4)],
        )
        .into_string();
        assert!(svg.contains("&lt;b&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        // The larger bar fills the whole track.
        let track = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
        assert!(svg.contains(&format!("width=\"{track:.1}\"")), "{svg}");
    }

    #[test]
    fn unknown_days_break_the_line() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap_or_default();
        let svg = line_chart(
            "trend",
            "t",
            &[
                (day(1), Some(1.0)),
                (day(2), Some(0.5)),
                (day(3), None),
                (day(4), Some(0.0)),
            ],
        )
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
    }
}
