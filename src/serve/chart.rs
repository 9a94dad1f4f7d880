//! The overview's chart of jobs ended per minute: inline SVG rendered on
//! the server (no script, no chart library; the CSP allows it as it is
//! markup, not a script or a style), one stacked bar per minute: `OK`,
//! `X`, `CX`.

use maud::{Markup, html};

use crate::store::MinuteCount;

const WIDTH: i64 = 600;
const HEIGHT: i64 = 120;
/// Room under the bars for the time labels.
const AXIS: i64 = 16;

/// The chart of `minutes`, oldest first.
pub fn chart(minutes: &[MinuteCount]) -> Markup {
    let total = |m: &MinuteCount| m.ok.saturating_add(m.failed).saturating_add(m.canceled);
    let most = minutes.iter().map(total).max().unwrap_or(0).max(1);
    let n = i64::try_from(minutes.len()).unwrap_or(1).max(1);
    let slot = (WIDTH / n).max(1);
    let sum = minutes.iter().map(total).fold(0i64, i64::saturating_add);
    // Height in pixels of `v` jobs.
    let px = |v: i64| v.saturating_mul(HEIGHT) / most;
    html! {
        svg.chart id="chart" role="img" data-total=(sum)
            viewBox={"0 0 " (WIDTH) " " (HEIGHT + AXIS)} width=(WIDTH) height=(HEIGHT + AXIS)
            xmlns="http://www.w3.org/2000/svg" {
            title { (sum) " jobs ended in the last " (minutes.len()) " minutes; at most " (most) " in a minute" }
            line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) stroke="#999" {}
            @for (i, m) in minutes.iter().enumerate() {
                @let x = i64::try_from(i).unwrap_or(0).saturating_mul(slot);
                @let (ok, failed, canceled) = (px(m.ok), px(m.failed), px(m.canceled));
                g {
                    title { (m.minute) " UTC: " (m.ok) " ok, " (m.failed) " failed, " (m.canceled) " canceled" }
                    @if ok > 0 { rect x=(x) y=(HEIGHT - ok) width=((slot - 1).max(1)) height=(ok) fill="#2e7d32" {} }
                    @if failed > 0 { rect x=(x) y=(HEIGHT - ok - failed) width=((slot - 1).max(1)) height=(failed) fill="#c62828" {} }
                    @if canceled > 0 { rect x=(x) y=(HEIGHT - ok - failed - canceled) width=((slot - 1).max(1)) height=(canceled) fill="#9e9e9e" {} }
                }
            }
            text x="0" y=(HEIGHT + AXIS - 3) font-size="11" fill="#555" { "−" (minutes.len()) " min" }
            text x=(WIDTH) y=(HEIGHT + AXIS - 3) font-size="11" fill="#555" text-anchor="end" { "now" }
            text x="2" y="11" font-size="11" fill="#555" { (most) "/min" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_minute() {
        let minutes = vec![
            MinuteCount {
                minute: "2026-11-29 17:00".into(),
                ok: 4,
                failed: 0,
                canceled: 0,
            },
            MinuteCount {
                minute: "2026-11-29 17:01".into(),
                ok: 1,
                failed: 1,
                canceled: 0,
            },
        ];
        let svg = chart(&minutes).into_string();
        assert!(svg.contains("data-total=\"6\""), "{svg}");
        // The busiest minute fills the height; the other is a quarter each.
        assert!(
            svg.contains("y=\"0\" width=\"299\" height=\"120\""),
            "{svg}"
        );
        assert!(svg.contains("height=\"30\" fill=\"#c62828\""), "{svg}");
        let empty = chart(&[]).into_string();
        assert!(empty.contains("data-total=\"0\""), "{empty}");
    }
}
