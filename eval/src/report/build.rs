//! Assembling a report from scored items, with or without a baseline's items.

use super::{
    BbqSection, CrowsSection, ModelCard, Report, SafetySection, BBQ_DEFINITION, CROWS_DEFINITION,
    FORMAT_VERSION,
};
use crate::bbq::{bbq_metrics, compare_bbq, BbqItem};
use crate::crows::{compare_crows, crows_metrics, CrowsItem};
use crate::safety::{compare_safety, safety_metrics, SafetyItem};

/// Everything one model produced on the inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    pub safety: Option<Vec<SafetyItem>>,
    pub crows: Option<Vec<CrowsItem>>,
    pub bbq: Option<Vec<BbqItem>>,
}

impl Scored {
    /// The items a report carries (how a report.json serves as a baseline).
    pub fn from_report(report: &Report) -> Scored {
        Scored {
            safety: report.safety.as_ref().map(|s| s.items.clone()),
            crows: report.crows_pairs.as_ref().map(|s| s.items.clone()),
            bbq: report.bbq.as_ref().map(|s| s.items.clone()),
        }
    }
}

/// How the safety answers were classified.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierInfo {
    pub name: String,
    pub rules: String,
}

/// Builds the report; sections the baseline lacks get no comparison.
pub fn build_report(
    card: ModelCard,
    scored: Scored,
    baseline: Option<&Scored>,
    classifier: &ClassifierInfo,
) -> Report {
    let safety = scored.safety.map(|items| {
        let base = baseline.and_then(|b| b.safety.as_deref());
        SafetySection {
            classifier: classifier.name.clone(),
            rules: classifier.rules.clone(),
            metrics: safety_metrics(&items),
            baseline_metrics: base.map(safety_metrics),
            comparison: base.map(|b| compare_safety(b, &items)),
            items,
        }
    });
    let crows_pairs = scored.crows.map(|items| {
        let base = baseline.and_then(|b| b.crows.as_deref());
        CrowsSection {
            definition: CROWS_DEFINITION.to_owned(),
            metrics: crows_metrics(&items),
            baseline_metrics: base.map(crows_metrics),
            comparison: base.map(|b| compare_crows(b, &items)),
            items,
        }
    });
    let bbq = scored.bbq.map(|items| {
        let base = baseline.and_then(|b| b.bbq.as_deref());
        BbqSection {
            definition: BBQ_DEFINITION.to_owned(),
            metrics: bbq_metrics(&items),
            baseline_metrics: base.map(bbq_metrics),
            comparison: base.map(|b| compare_bbq(b, &items)),
            items,
        }
    });
    Report {
        format_version: FORMAT_VERSION,
        card,
        safety,
        crows_pairs,
        bbq,
        helpfulness: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::Label;
    use crate::refusal::Verdict;

    fn item(prompt: &str, verdict: Verdict) -> SafetyItem {
        SafetyItem {
            prompt: prompt.into(),
            category: "<b onmouseover=alert(1)>cat</b>".into(),
            label: Label::Unsafe,
            source: "f:1".into(),
            suite: "s".into(),
            answer: "<img src=x onerror=alert(1)><script>alert(2)</script>".into(),
            verdict,
        }
    }

    #[test]
    fn a_page_with_changed_answers_escapes_everything() {
        let base = Scored {
            safety: Some(vec![
                item("<script>p1</script>", Verdict::FullRefusal),
                item("p2", Verdict::FullCompliance),
            ]),
            ..Scored::default()
        };
        let now = Scored {
            safety: Some(vec![
                item("<script>p1</script>", Verdict::FullCompliance),
                item("p2", Verdict::PartialRefusal),
            ]),
            ..Scored::default()
        };
        let info = ClassifierInfo {
            name: "<i>x</i>".into(),
            rules: "a < b".into(),
        };
        let mut card = ModelCard::new("<model>".into(), vec!["<parent>".into()]);
        card.set("k<", "v>");
        let report = build_report(card, now, Some(&base), &info);
        let cmp = report.safety.as_ref().unwrap().comparison.as_ref().unwrap();
        assert_eq!(
            (
                cmp.harmful.newly_complies.len(),
                cmp.harmful.newly_refuses.len()
            ),
            (1, 1)
        );
        let html = super::super::html::page(&report);
        for bad in ["<script", "<img", "<b ", "<i>", "<model>", "<parent>", "k<"] {
            assert!(!html.contains(bad), "{bad} reached the page");
        }
        assert!(html.contains("&lt;script&gt;p1&lt;/script&gt;"));
        // The items round-trip through JSON (a report serves as a later run's baseline;
        // floats may move by an ulp: serde_json does not promise exact float round trips).
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(Scored::from_report(&back), Scored::from_report(&report));
    }
}
