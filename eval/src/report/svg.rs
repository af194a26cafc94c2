//! Inline SVG bar charts: horizontal bars with 95% interval whiskers, an optional
//! baseline marker per bar and an optional reference line; and the round tick values the
//! training curves' axes use. No scripts, no fonts fetched. (Hand-written rather than
//! `plotters`: drawn side by side, plotters' defaults give no whiskers, baseline markers or
//! per-bar notes, and these charts escape every label themselves.)

use std::fmt::Write as _;

use super::html::escape;
use crate::stats::Interval;

/// One bar.
#[derive(Debug, Clone, Default)]
pub struct Bar {
    pub label: String,
    /// None draws "n/a" (an empty group).
    pub value: Option<f64>,
    pub interval: Option<Interval>,
    /// The baseline's value, drawn as a hollow diamond.
    pub baseline: Option<f64>,
    /// Shown after the bar (e.g. `12/40`).
    pub note: String,
}

/// The value axis.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    /// A dashed line at this value (e.g. 50% for CrowS-Pairs).
    pub reference: Option<f64>,
    /// Tick labels as percentages.
    pub percent: bool,
}

impl Axis {
    pub const RATE: Axis = Axis {
        min: 0.0,
        max: 1.0,
        reference: None,
        percent: true,
    };
    pub const SCORE: Axis = Axis {
        min: -1.0,
        max: 1.0,
        reference: Some(0.0),
        percent: false,
    };
}

const LABEL_W: f64 = 190.0;
const PLOT_W: f64 = 380.0;
const NOTE_W: f64 = 110.0;
const ROW_H: f64 = 24.0;
const TOP: f64 = 28.0;

fn tick(axis: Axis, v: f64) -> String {
    if axis.percent {
        format!("{:.0}%", v * 100.0)
    } else {
        format!("{v:+.1}").replace("+0.0", "0")
    }
}

/// A chart of `bars`, titled `title` (both escaped here).
pub fn bar_chart(title: &str, bars: &[Bar], axis: Axis, color: &str) -> String {
    let height = TOP + ROW_H * bars.len().max(1) as f64 + 26.0;
    let width = LABEL_W + PLOT_W + NOTE_W;
    let x = |v: f64| {
        LABEL_W + PLOT_W * ((v.clamp(axis.min, axis.max) - axis.min) / (axis.max - axis.min))
    };
    let zero = x(0.0_f64.clamp(axis.min, axis.max));
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{t}"><title>{t}</title><text x="0" y="16" class="ct">{t}</text>"##,
        t = escape(title)
    );
    // Grid and ticks.
    for i in 0..=4 {
        let v = axis.min + (axis.max - axis.min) * f64::from(i) / 4.0;
        let gx = x(v);
        let _ = write!(
            s,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{y2:.1}" class="grid"/><text x="{gx:.1}" y="{ty:.1}" class="tick" text-anchor="middle">{label}</text>"##,
            y2 = height - 22.0,
            ty = height - 8.0,
            label = tick(axis, v)
        );
    }
    if let Some(r) = axis.reference {
        let rx = x(r);
        let _ = write!(
            s,
            r##"<line x1="{rx:.1}" y1="{TOP}" x2="{rx:.1}" y2="{:.1}" class="ref"/>"##,
            height - 22.0
        );
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let cy = y + ROW_H / 2.0;
        let _ = write!(
            s,
            r##"<text x="{lx}" y="{ty:.1}" class="label" text-anchor="end">{label}</text>"##,
            lx = LABEL_W - 8.0,
            ty = cy + 4.0,
            label = escape(&truncate(&bar.label, 28))
        );
        match bar.value {
            Some(v) => {
                let (x0, x1) = if x(v) >= zero {
                    (zero, x(v))
                } else {
                    (x(v), zero)
                };
                let _ = write!(
                    s,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {}</title></rect>"##,
                    y + 5.0,
                    (x1 - x0).max(1.0),
                    ROW_H - 10.0,
                    escape(&bar.label),
                    tick(axis, v)
                );
            }
            None => {
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" class="na">n/a</text>"##,
                    zero + 4.0,
                    cy + 4.0
                );
            }
        }
        if let Some(iv) = bar.interval {
            let (lo, hi) = (x(iv.lo), x(iv.hi));
            let _ = write!(
                s,
                r##"<path d="M{lo:.1} {a:.1}V{b:.1}M{lo:.1} {cy:.1}H{hi:.1}M{hi:.1} {a:.1}V{b:.1}" class="whisker"/>"##,
                a = cy - 5.0,
                b = cy + 5.0
            );
        }
        if let Some(b) = bar.baseline {
            let bx = x(b);
            let _ = write!(
                s,
                r##"<path d="M{bx:.1} {:.1}L{:.1} {cy:.1}L{bx:.1} {:.1}L{:.1} {cy:.1}Z" class="base"><title>baseline {}</title></path>"##,
                cy - 6.0,
                bx + 5.0,
                cy + 6.0,
                bx - 5.0,
                tick(axis, b)
            );
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" class="note">{}</text>"##,
            LABEL_W + PLOT_W + 8.0,
            cy + 4.0,
            escape(&bar.note)
        );
    }
    s.push_str("</svg>");
    s
}

/// About `n` round tick values (1, 2 or 5 times a power of ten apart) inside `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let ordered = lo.is_finite() && hi.is_finite() && hi > lo;
    if !ordered {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = magnitude
        * match raw / magnitude {
            f if f <= 1.0 => 1.0,
            f if f <= 2.0 => 2.0,
            f if f <= 5.0 => 5.0,
            _ => 10.0,
        };
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // Multiples of the step, not a running sum, so rounding errors do not accumulate.
    (first..=last).map(|k| k as f64 * step).collect()
}

/// At most `n` characters, with an ellipsis when cut.
pub fn truncate(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_owned()
    } else {
        format!(
            "{}…",
            text.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_escapes_labels_and_draws_whiskers() {
        let bars = [
            Bar {
                label: "<script>x</script>".into(),
                value: Some(0.5),
                interval: Some(Interval { lo: 0.3, hi: 0.7 }),
                baseline: Some(0.2),
                note: "5/10".into(),
            },
            Bar {
                label: "empty".into(),
                value: None,
                ..Bar::default()
            },
        ];
        let svg = bar_chart("Refusal & <b>", &bars, Axis::RATE, "#2a6");
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
        assert!(svg.contains("Refusal &amp; &lt;b&gt;"));
        assert!(
            svg.contains("class=\"whisker\"")
                && svg.contains("class=\"base\"")
                && svg.contains("n/a")
        );
        // 0.5 on a 380-wide plot starting at 190: the bar ends at 380.
        assert!(
            svg.contains("<rect x=\"190.0\" y=\"33.0\" width=\"190.0\""),
            "{svg}"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn ticks_are_round_multiples_inside_the_range() {
        assert_eq!(nice_ticks(0.0, 0.53, 4), [0.0, 0.2, 0.4]);
        assert_eq!(nice_ticks(5.0, 60.0, 4), [20.0, 40.0, 60.0]);
        assert_eq!(nice_ticks(-133.1, -41.1, 4), [-100.0, -50.0]);
        assert_eq!(nice_ticks(0.0, 3.0, 4), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(1.0, 1.0, 4), [1.0]);
    }
}
