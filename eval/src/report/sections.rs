//! The page's sections. Each returns HTML; every untrusted string is escaped here.

use std::fmt::Write as _;

use super::card::ModelCard;
use super::html::{escape, num, p_value, pct, pp};
use super::svg::{bar_chart, Axis, Bar};
use super::{BbqSection, CrowsSection, HelpfulnessSection, Report};
use crate::bbq::BbqGroup;
use crate::safety::PoolComparison;
use crate::stats::{Interval, Proportion};

pub(super) fn interval(i: Option<Interval>) -> String {
    i.map_or_else(String::new, |i| {
        format!("95% CI {:.1}–{:.1}%", 100.0 * i.lo, 100.0 * i.hi)
    })
}

/// A bias score's interval (scores are not percentages).
fn score_interval(i: Option<Interval>) -> String {
    i.map_or_else(String::new, |i| format!("95% CI {:.3}–{:.3}", i.lo, i.hi))
}

/// One headline card; `better` says whether the change is good (Some(true)), bad or neutral.
fn stat_card(
    key: &str,
    value: &str,
    detail: &str,
    delta: Option<(String, Option<bool>)>,
) -> String {
    let delta = delta.map_or(String::new(), |(text, better)| {
        let class = match better {
            Some(true) => "good",
            Some(false) => "bad",
            None => "",
        };
        format!("<div class=\"d {class}\">{text}</div>")
    });
    format!(
        "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"d\">{}</div>{delta}</div>",
        escape(key),
        escape(value),
        escape(detail)
    )
}

fn rate_card(
    key: &str,
    p: &Proportion,
    cmp: Option<&PoolComparison>,
    higher_is_better: bool,
) -> String {
    let delta = cmp.map(|c| {
        let better = c
            .delta
            .filter(|d| *d != 0.0)
            .map(|d| (d > 0.0) == higher_is_better);
        (
            format!(
                "{} vs baseline (p = {}, n = {})",
                pp(c.delta),
                p_value(c.test.p_value),
                c.paired
            ),
            better,
        )
    });
    stat_card(
        key,
        &pct(p.rate),
        &format!("{}/{} · {}", p.k, p.n, interval(p.interval)),
        delta,
    )
}

pub fn headline(report: &Report) -> String {
    let mut s = String::from("<section><div class=\"cards\">");
    if let Some(safety) = &report.safety {
        let cmp = safety.comparison.as_ref();
        s += &rate_card(
            "Refusal on harmful prompts (higher is better)",
            &safety.metrics.harmful.overall.refusal_rate,
            cmp.map(|c| &c.harmful),
            true,
        );
        s += &rate_card(
            "Over-refusal on benign prompts (lower is better)",
            &safety.metrics.benign.overall.refusal_rate,
            cmp.map(|c| &c.benign),
            false,
        );
    }
    if let Some(crows) = &report.crows_pairs {
        let o = &crows.metrics.overall;
        let delta = crows.comparison.as_ref().map(|c| {
            // Better when it moves toward 50%; no colour when it does not move.
            let toward_half = c
                .baseline_pct_stereotype
                .zip(c.pct_stereotype)
                .filter(|(b, m)| (m - 0.5).abs() != (b - 0.5).abs())
                .map(|(b, m)| (m - 0.5).abs() < (b - 0.5).abs());
            (
                format!(
                    "{} vs baseline (p = {}, n = {})",
                    pp(c.delta),
                    p_value(c.test.p_value),
                    c.paired
                ),
                toward_half,
            )
        });
        s += &stat_card(
            "CrowS-Pairs stereotype preference (50% is unbiased)",
            &pct(o.pct_stereotype),
            &format!("{}/{} pairs · {}", o.stereotyped, o.n, interval(o.interval)),
            delta,
        );
    }
    if let Some(bbq) = &report.bbq {
        let o = &bbq.metrics.overall;
        let delta = bbq.comparison.as_ref().map(|c| {
            let d = c
                .model
                .accuracy
                .zip(c.baseline.accuracy)
                .map(|(m, b)| m - b);
            (
                format!(
                    "accuracy {} vs baseline (p = {})",
                    pp(d),
                    p_value(c.test.p_value)
                ),
                d.filter(|d| *d != 0.0).map(|d| d > 0.0),
            )
        });
        s += &stat_card(
            "BBQ accuracy ambiguous / disambiguated",
            &format!("{} / {}", pct(o.accuracy_ambig), pct(o.accuracy_disambig)),
            &format!("{} + {} questions", o.n_ambig, o.n_disambig),
            delta,
        );
        s += &stat_card(
            "BBQ bias s_AMB / s_DIS (0 is unbiased)",
            &format!("{} / {}", num(o.s_amb, 3), num(o.s_dis, 3)),
            "lm-evaluation-harness definition",
            None,
        );
    }
    if let Some(h) = &report.helpfulness {
        let m = &h.metrics;
        let better = m.win_rate.filter(|w| *w != 0.5).map(|w| w > 0.5);
        s += &stat_card(
            "Reward-model win rate vs baseline (benign prompts)",
            &pct(m.win_rate),
            &format!(
                "{}W {}T {}L · {}",
                m.wins,
                m.ties,
                m.losses,
                interval(m.interval)
            ),
            Some((format!("sign test p = {}", p_value(m.test.p_value)), better)),
        );
    }
    s + "</div></section>"
}

pub fn crows(sec: &CrowsSection) -> String {
    let mut s = String::from("<section><h2>Bias: CrowS-Pairs</h2>");
    let _ = write!(s, "<p class=\"note\">{}</p>", escape(&sec.definition));
    let groups: Vec<_> = std::iter::once(&sec.metrics.overall)
        .chain(&sec.metrics.by_bias_type)
        .collect();
    let bars: Vec<Bar> = groups
        .iter()
        .map(|g| Bar {
            label: g.name.clone(),
            value: g.pct_stereotype,
            interval: g.interval,
            baseline: sec
                .baseline_metrics
                .as_ref()
                .and_then(|b| {
                    std::iter::once(&b.overall)
                        .chain(&b.by_bias_type)
                        .find(|x| x.name == g.name)
                })
                .and_then(|b| b.pct_stereotype),
            note: format!("{}/{}", g.stereotyped, g.n),
        })
        .collect();
    s += &bar_chart(
        "Share of pairs where the stereotyping sentence is more likely (50% is unbiased)",
        &bars,
        Axis {
            reference: Some(0.5),
            ..Axis::RATE
        },
        "#6b46c1",
    );
    s += "<table><tr><th>bias type</th><th>pairs</th><th>pct_stereotype</th><th>95% bootstrap CI</th><th>likelihood_diff (nats)</th></tr>";
    for g in groups {
        let _ = write!(s, "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>", escape(&g.name), g.n, pct(g.pct_stereotype), interval(g.interval), num(g.likelihood_diff, 3));
    }
    s += "</table>";
    if let Some(c) = &sec.comparison {
        let _ = write!(s, "<h3>Against the baseline</h3><table><tr><th>paired</th><th>baseline</th><th>model</th><th>change</th><th>test</th><th>p</th></tr><tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr></table>",
            c.paired, pct(c.baseline_pct_stereotype), pct(c.pct_stereotype), pp(c.delta), escape(&c.test.test), p_value(c.test.p_value));
    }
    s + "</section>"
}

fn bbq_row(g: &BbqGroup) -> String {
    format!(
        "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} {}</td><td class=\"n\">{} {}</td><td class=\"n\">{} {}</td><td class=\"n\">{} {}</td><td class=\"n\">{}</td></tr>",
        escape(&g.name), g.n_ambig, g.n_disambig,
        pct(g.accuracy_ambig), interval(g.intervals.accuracy_ambig),
        pct(g.accuracy_disambig), interval(g.intervals.accuracy_disambig),
        num(g.s_amb, 3), score_interval(g.intervals.s_amb),
        num(g.s_dis, 3), score_interval(g.intervals.s_dis),
        g.unknown_answers
    )
}

pub fn bbq(sec: &BbqSection) -> String {
    let mut s = String::from("<section><h2>Bias: BBQ</h2>");
    let _ = write!(s, "<p class=\"note\">{}</p>", escape(&sec.definition));
    let groups: Vec<&BbqGroup> = std::iter::once(&sec.metrics.overall)
        .chain(&sec.metrics.by_category)
        .collect();
    let base = |name: &str| {
        sec.baseline_metrics.as_ref().and_then(|b| {
            std::iter::once(&b.overall)
                .chain(&b.by_category)
                .find(|x| x.name == name)
                .cloned()
        })
    };
    type Pick = fn(&BbqGroup) -> (Option<f64>, Option<Interval>);
    let bars = |f: Pick| -> Vec<Bar> {
        groups
            .iter()
            .map(|g| Bar {
                label: g.name.clone(),
                value: f(g).0,
                interval: f(g).1,
                baseline: base(&g.name).and_then(|b| f(&b).0),
                note: num(f(g).0, 3),
            })
            .collect()
    };
    s += &bar_chart(
        "s_AMB: bias in ambiguous contexts (0 is unbiased)",
        &bars(|g| (g.s_amb, g.intervals.s_amb)),
        Axis::SCORE,
        "#b7791f",
    );
    s += &bar_chart(
        "s_DIS: bias in disambiguated contexts (0 is unbiased)",
        &bars(|g| (g.s_dis, g.intervals.s_dis)),
        Axis::SCORE,
        "#2b6cb0",
    );
    s += "<table><tr><th>category</th><th>ambiguous</th><th>disambiguated</th><th>accuracy ambiguous</th><th>accuracy disambiguated</th><th>s_AMB</th><th>s_DIS</th><th>'unknown' chosen</th></tr>";
    for g in &groups {
        s += &bbq_row(g);
    }
    s += "</table>";
    if let Some(c) = &sec.comparison {
        let _ = write!(s, "<h3>Against the baseline ({} paired questions; {}: p = {})</h3><table><tr><th>run</th><th>ambiguous</th><th>disambiguated</th><th>accuracy ambiguous</th><th>accuracy disambiguated</th><th>s_AMB</th><th>s_DIS</th><th>'unknown' chosen</th></tr>{}{}</table>",
            c.paired, escape(&c.test.test), p_value(c.test.p_value), bbq_row(&c.baseline), bbq_row(&c.model));
    }
    s + "</section>"
}

pub fn helpfulness(sec: Option<&HelpfulnessSection>) -> String {
    let Some(sec) = sec else {
        return "<section><h2>Helpfulness</h2><p class=\"note\">Reward-model win rate against the baseline: not \
                measured (run with <code>--reward DIR --baseline DIR</code>).</p></section>"
            .to_owned();
    };
    let m = &sec.metrics;
    let mut s = String::from("<section><h2>Helpfulness: reward-model win rate</h2>");
    let _ = write!(
        s,
        "<p class=\"note\">Reward model {}. {}</p>",
        escape(&sec.reward_model),
        escape(&sec.definition)
    );
    let bar = Bar {
        label: "win rate against the baseline".into(),
        value: m.win_rate,
        interval: m.interval,
        baseline: None,
        note: format!("{}W {}T {}L", m.wins, m.ties, m.losses),
    };
    s += &bar_chart(
        "Benign prompts where the model's answer has the higher reward (50% is a draw)",
        &[bar],
        Axis {
            reference: Some(0.5),
            ..Axis::RATE
        },
        "#0f766e",
    );
    let _ = write!(s, "<table><tr><th>prompts</th><th>win rate</th><th>95% bootstrap CI</th><th>mean reward (model)</th><th>mean reward (baseline)</th><th>test</th><th>p</th></tr><tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr></table>",
        m.n, pct(m.win_rate), interval(m.interval), num(m.mean_reward, 3), num(m.mean_baseline_reward, 3), escape(&m.test.test), p_value(m.test.p_value));
    s + "</section>"
}

pub fn model_card(card: &ModelCard) -> String {
    let mut s = String::from("<section><h2>Model card</h2><table>");
    let parents = if card.parents.is_empty() {
        "none recorded (no manifest.json)".to_owned()
    } else {
        card.parents.join(", ")
    };
    for (k, v) in [
        ("model", card.model.as_str()),
        ("parent checkpoints", parents.as_str()),
        ("baseline", card.baseline.as_deref().unwrap_or("none")),
        ("date", card.date.as_str()),
        ("tiller", card.tiller_version.as_str()),
    ] {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    for (k, v) in &card.settings {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    s += "</table><h3>Data</h3><table><tr><th>used as</th><th>file</th><th>rows</th><th>sha256</th></tr>";
    for d in &card.data {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            escape(&d.role),
            escape(&d.path),
            d.rows,
            escape(&d.sha256)
        );
    }
    s + "</table></section>"
}
