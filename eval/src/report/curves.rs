//! Training curves: `metrics.jsonl` (one JSON object per logged step, as every tiller
//! trainer writes it) drawn as one inline-SVG line chart per metric in a self-contained
//! `curves.html`. Held-out metrics (`eval_*`) are logged at other steps than training ones,
//! so each metric keeps its own points.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::html::escape;
use super::svg::nice_ticks;
use crate::error::{input_err, EvalError, Result};

const METRICS_FILE: &str = "metrics.jsonl";

/// Each metric's (step, value) points, in file order.
pub type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Metrics that say nothing about training progress (clocks, counters, the schedule).
const SKIPPED: [&str; 3] = ["step", "epoch", "num_tokens"];

/// Reads `metrics.jsonl`; a line that is not a JSON object is an error naming the line.
pub fn read_metrics(path: &Path) -> Result<Series> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut series = Series::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| {
                EvalError::Input(format!(
                    "{}:{}: not a JSON object: {e}",
                    path.display(),
                    i + 1
                ))
            })?;
        let Some(step) = row.get("step").and_then(serde_json::Value::as_f64) else {
            input_err!(
                "{}:{}: field `step` is missing or not a number",
                path.display(),
                i + 1
            );
        };
        for (key, value) in &row {
            if SKIPPED.contains(&key.as_str()) || key.starts_with("time/") {
                continue;
            }
            if let Some(v) = value.as_f64().filter(|v| v.is_finite()) {
                series.entry(key.clone()).or_default().push((step, v));
            }
        }
    }
    Ok(series)
}

const W: f64 = 320.0;
const H: f64 = 160.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 22.0;

/// One metric as a line chart with its first and last values in the title.
pub fn line_chart(name: &str, points: &[(f64, f64)]) -> String {
    let (x0, x1) = bounds(points.iter().map(|p| p.0));
    let (y0, y1) = bounds(points.iter().map(|p| p.1));
    let x = |v: f64| LEFT + (W - LEFT - 8.0) * (v - x0) / (x1 - x0);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v - y0) / (y1 - y0));
    let mut s = String::new();
    let (first, last) = (points[0].1, points[points.len() - 1].1);
    let _ = write!(
        s,
        r#"<svg class="curve" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img"><title>{n}</title><text x="4" y="14" class="t">{n}: {first} → {last}</text>"#,
        n = escape(name),
        first = short(first),
        last = short(last),
    );
    let (bottom, right) = (H - BOTTOM, W - 8.0);
    let _ = write!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="ax"/><line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" class="ax"/>"#
    );
    // Round ticks with grid lines on both axes; steps are whole numbers.
    for v in nice_ticks(y0, y1, 4) {
        let gy = y(v);
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{gy:.1}" x2="{right}" y2="{gy:.1}" class="grid"/><text x="{}" y="{:.1}" class="l" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            gy + 3.0,
            short(v)
        );
    }
    for v in nice_ticks(x0, x1, 4)
        .into_iter()
        .filter(|v| v.fract() == 0.0)
    {
        let gx = x(v);
        let _ = write!(
            s,
            r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{bottom}" class="grid"/><text x="{gx:.1}" y="{}" class="l" text-anchor="middle">{v}</text>"#,
            bottom + 11.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{right}" y="{}" class="l" text-anchor="end">step</text>"#,
        H - 1.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
        .collect();
    let _ = write!(s, r#"<polyline points="{}" class="line"/>"#, path.join(" "));
    if points.len() <= 40 {
        for &(px, py) in points {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" class="pt"/>"#,
                x(px),
                y(py)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A page with every metric's chart, titled after the run directory.
pub fn page(title: &str, series: &Series) -> String {
    let mut charts = String::new();
    for (name, points) in series {
        charts.push_str(&line_chart(name, points));
    }
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{t}</title><style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}
.curve{{margin:6px;border:1px solid #ddd;background:#fff}}
.t{{font-size:12px;font-weight:600}} .l{{font-size:10px;fill:#555}}
.ax{{stroke:#999}} .grid{{stroke:#eee}} .line{{fill:none;stroke:#2563eb;stroke-width:1.5}} .pt{{fill:#2563eb}}
</style></head><body><h1>Training curves: {t}</h1><p>{n} metrics from metrics.jsonl, by step.</p>
<div>{charts}</div></body></html>"#,
        t = escape(title),
        n = series.len(),
    )
}

/// Writes `<run>/curves.html` from `<run>/metrics.jsonl`; returns the page's path.
pub fn write_curves(run: &Path) -> Result<std::path::PathBuf> {
    let series = read_metrics(&run.join(METRICS_FILE))?;
    let out = run.join("curves.html");
    std::fs::write(&out, page(&run.display().to_string(), &series))
        .map_err(|e| EvalError::io(&out, e))?;
    Ok(out)
}

/// [`write_curves`] for a run that logged metrics; None (and nothing written) otherwise.
pub fn write_curves_if_logged(run: &Path) -> Result<Option<std::path::PathBuf>> {
    if run.join(METRICS_FILE).is_file() {
        write_curves(run).map(Some)
    } else {
        Ok(None)
    }
}

/// The (min, max) of `values`, widened when all are equal so the scale never divides by 0.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// A number in at most four significant digits.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_metric_at_its_own_steps_and_draws_escaped_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"step":1,"loss":0.5,"epoch":0.1,"time/step_s":3}"#,
                "\n",
                r#"{"step":2,"loss":0.25,"eval_loss":0.7,"<b>":1}"#,
                "\n",
                r#"{"step":3,"loss":0.125}"#,
                "\n"
            ),
        )
        .unwrap();
        let series = read_metrics(&path).unwrap();
        assert_eq!(series["loss"], [(1.0, 0.5), (2.0, 0.25), (3.0, 0.125)]);
        assert_eq!(series["eval_loss"], [(2.0, 0.7)]);
        assert!(!series.contains_key("epoch") && !series.contains_key("time/step_s"));
        let html = page("run <x>", &series);
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("loss: 0.5 → 0.125"), "{html}");
        assert!(!html.contains("<b>") && html.contains("&lt;b&gt;"));
        assert!(html.contains("run &lt;x&gt;"));
        // The highest loss sits at the top of the plot, the lowest at the bottom.
        assert!(html.contains(r#"points="56.0,22.0 "#), "{html}");
        // Round ticks: the loss axis (0.125..0.5) at 0.2 and 0.4, the steps at 1, 2, 3.
        assert!(
            html.contains(">0.2</text>") && html.contains(">0.4</text>"),
            "{html}"
        );
        assert!(html.contains(r#"text-anchor="middle">2</text>"#), "{html}");

        std::fs::write(&path, "{\"step\":1}\nnot json\n").unwrap();
        let err = format!("{:#}", read_metrics(&path).unwrap_err());
        assert!(err.contains("metrics.jsonl:2"), "{err}");
    }
}
