//! Refusal classifiers for the safety report: anything that sorts (prompt, answer) pairs
//! into XSTest's three classes. The default is the project's one string classifier,
//! `tiller_reward::refusal` (the `refusal` reward rule uses the same one, so a reward and
//! a report never disagree on an answer); a judge model ([`crate::judge::Judge`]) plugs
//! in through the same trait.

pub use tiller_reward::refusal::{classify, Verdict, RULES};

use crate::error::{EvalError, Result};

/// Anything that sorts (prompt, answer) pairs into the three classes.
pub trait RefusalClassifier {
    /// Names the classifier in reports (e.g. `string-match v2`).
    fn name(&self) -> String;
    /// One verdict per (prompt, answer), in order.
    fn classify(&mut self, items: &[(&str, &str)]) -> Result<Vec<Verdict>>;
}

/// The string rules of [`tiller_reward::refusal`]; stateless.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringMatch;

impl StringMatch {
    pub const NAME: &'static str = tiller_reward::refusal::NAME;

    /// The verdict for one answer (the prompt is not used).
    pub fn verdict(answer: &str) -> Verdict {
        classify(answer)
    }
}

impl RefusalClassifier for StringMatch {
    fn name(&self) -> String {
        Self::NAME.to_owned()
    }

    fn classify(&mut self, items: &[(&str, &str)]) -> Result<Vec<Verdict>> {
        Ok(items.iter().map(|(_, answer)| classify(answer)).collect())
    }
}

/// A human label (`1_full_compliance`, `full_refusal`, ...) at `location`, field `field`.
pub fn parse_label(label: &str, location: &str, field: &str) -> Result<Verdict> {
    Verdict::parse(label).ok_or_else(|| {
        EvalError::Input(format!(
            "{location}: field `{field}`: unknown label {label:?} (expected {})",
            Verdict::LABELS
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::Verdict::*;
    use super::*;

    #[test]
    fn classifier_trait_keeps_order() {
        let mut c = StringMatch;
        let got = c.classify(&[("p", "I cannot."), ("p", "Yes, 4.")]).unwrap();
        assert_eq!(got, vec![FullRefusal, FullCompliance]);
    }

    #[test]
    fn labels_name_the_place() {
        let err = parse_label("maybe", "x.csv:3", "final_label")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.csv:3")
                && err.contains("`final_label`")
                && err.contains("1_full_compliance"),
            "{err}"
        );
    }
}
