//! The safety section of the page: refusal charts, counts per category, the comparison
//! with the baseline and the answers that changed. Every untrusted string is escaped here.

use std::fmt::Write as _;

use super::html::{escape, p_value, pct, pp};
use super::sections::interval;
use super::svg::{bar_chart, Axis, Bar};
use super::SafetySection;
use crate::safety::{ChangedAnswer, GroupStats, PoolMetrics};

/// Rows of "all answers" shown before the list is cut (report.json has them all).
const MAX_LISTED: usize = 1000;

fn rate_bars(pool: &PoolMetrics, baseline: Option<&PoolMetrics>) -> Vec<Bar> {
    let mut groups: Vec<&GroupStats> = vec![&pool.overall];
    groups.extend(&pool.by_category);
    groups
        .into_iter()
        .map(|g| {
            let base = baseline.and_then(|b| {
                std::iter::once(&b.overall)
                    .chain(&b.by_category)
                    .find(|x| x.name == g.name)
            });
            Bar {
                label: g.name.clone(),
                value: g.refusal_rate.rate,
                interval: g.refusal_rate.interval,
                baseline: base.and_then(|b| b.refusal_rate.rate),
                note: format!("{}/{}", g.refusal_rate.k, g.n),
            }
        })
        .collect()
}

fn counts_table(title: &str, pool: &PoolMetrics) -> String {
    let mut s = format!("<h3>{}</h3><table><tr><th>category</th><th>n</th><th>full compliance</th><th>full refusal</th><th>partial refusal</th><th>refusal rate</th><th>95% CI</th></tr>", escape(title));
    for g in std::iter::once(&pool.overall).chain(&pool.by_category) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&g.name), g.n, g.full_compliance, g.full_refusal, g.partial_refusal, pct(g.refusal_rate.rate), interval(g.refusal_rate.interval)
        );
    }
    s + "</table>"
}

/// One row per suite: refusal rate on harmful suites, compliance rate on benign ones.
fn suites_table(m: &crate::safety::SafetyMetrics) -> String {
    let mut s = String::from("<h3>Suites</h3><table><tr><th>suite</th><th>side</th><th>n</th><th>figure</th><th>rate</th><th>95% CI</th></tr>");
    let sides = [
        ("harmful", "refusal", &m.harmful),
        ("benign", "compliance", &m.benign),
    ];
    for (side, figure, pool) in sides {
        for g in &pool.by_suite {
            let p = if figure == "refusal" {
                &g.refusal_rate
            } else {
                &g.compliance_rate
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{side}</td><td class=\"n\">{}</td><td>{figure}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&g.name), g.n, pct(p.rate), interval(p.interval)
            );
        }
    }
    s + "</table>"
}

/// Over-refusal's own summary: full compliance on the benign prompts, per category.
fn over_refusal(benign: &PoolMetrics) -> String {
    let mut s = String::from("<h3>Over-refusal: compliance on benign prompts</h3><table><tr><th>category</th><th>n</th><th>full compliance</th><th>95% CI</th></tr>");
    for g in std::iter::once(&benign.overall).chain(&benign.by_category) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&g.name),
            g.n,
            pct(g.compliance_rate.rate),
            interval(g.compliance_rate.interval)
        );
    }
    s + "</table><p class=\"note\">Higher is better: a benign prompt should be answered in full.</p>"
}

fn changed_list(title: &str, changed: &[ChangedAnswer]) -> String {
    let mut s = format!(
        "<details><summary>{} ({})</summary>",
        escape(title),
        changed.len()
    );
    if changed.is_empty() {
        s += "<p class=\"note\">None.</p>";
    } else {
        s += "<table><tr><th>prompt</th><th>baseline answer</th><th>answer now</th></tr>";
        for c in changed {
            let _ = write!(
                s,
                "<tr><td>{} <span class=\"note\">({})</span></td><td><b>{}</b><pre>{}</pre></td><td><b>{}</b><pre>{}</pre></td></tr>",
                escape(&c.prompt), escape(&c.category), c.baseline_verdict, escape(&c.baseline_answer), c.verdict, escape(&c.answer)
            );
        }
        s += "</table>";
    }
    s + "</details>"
}

pub fn safety(sec: &SafetySection) -> String {
    let base = sec.baseline_metrics.as_ref();
    let mut s = String::from("<section><h2>Safety: refusals</h2>");
    let _ = write!(s, "<p>Classifier: <b>{}</b>. Refusal rate counts full and partial refusals (as XSTest does); intervals are Wilson 95%.</p><details><summary>How answers are classified</summary><pre>{}</pre></details>", escape(&sec.classifier), escape(&sec.rules));
    s += &bar_chart(
        "Refusal rate on harmful prompts, by category (higher is better)",
        &rate_bars(&sec.metrics.harmful, base.map(|b| &b.harmful)),
        Axis::RATE,
        "#2f855a",
    );
    s += &bar_chart(
        "Over-refusal on benign prompts, by category (lower is better)",
        &rate_bars(&sec.metrics.benign, base.map(|b| &b.benign)),
        Axis::RATE,
        "#c05621",
    );
    if base.is_some() {
        s += "<p class=\"note\">Hollow diamonds mark the baseline.</p>";
    }
    s += &suites_table(&sec.metrics);
    s += &counts_table("Harmful prompts", &sec.metrics.harmful);
    s += &counts_table("Benign prompts", &sec.metrics.benign);
    s += &over_refusal(&sec.metrics.benign);
    if let Some(c) = &sec.comparison {
        s += "<h3>Against the baseline</h3><table><tr><th>prompts</th><th>paired</th><th>baseline</th><th>model</th><th>change</th><th>test</th><th>p</th></tr>";
        for (name, p) in [("harmful", &c.harmful), ("benign", &c.benign)] {
            let _ = write!(
                s,
                "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                p.paired, pct(p.baseline_refusal_rate.rate), pct(p.refusal_rate.rate), pp(p.delta), escape(&p.test.test), p_value(p.test.p_value)
            );
        }
        s += "</table><p class=\"note\">Paired by prompt text; * marks p &lt; 0.05.</p>";
        s += &changed_list(
            "Harmful prompts: refused before, complies now",
            &c.harmful.newly_complies,
        );
        s += &changed_list(
            "Harmful prompts: complied before, refuses now",
            &c.harmful.newly_refuses,
        );
        s += &changed_list(
            "Benign prompts: refused before, complies now",
            &c.benign.newly_complies,
        );
        s += &changed_list(
            "Benign prompts: complied before, refuses now",
            &c.benign.newly_refuses,
        );
    }
    let _ = write!(s, "<details><summary>All answers ({})</summary><table><tr><th>prompt</th><th>label</th><th>category</th><th>verdict</th><th>answer</th></tr>", sec.items.len());
    for item in sec.items.iter().take(MAX_LISTED) {
        let label = if item.label == crate::inputs::Label::Safe {
            "safe"
        } else {
            "unsafe"
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{label}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            escape(&item.prompt),
            escape(&item.category),
            item.verdict,
            escape(&item.answer)
        );
    }
    s += "</table>";
    if sec.items.len() > MAX_LISTED {
        let _ = write!(
            s,
            "<p class=\"note\">First {MAX_LISTED} shown; report.json has all.</p>"
        );
    }
    s + "</details></section>"
}
