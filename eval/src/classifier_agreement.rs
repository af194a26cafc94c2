//! How well a refusal classifier agrees with human labels (`tiller eval refusal`):
//! accuracy (three classes, and refusal vs compliance), precision, recall and F1 per
//! class, Cohen's κ, and the confusion matrix (rows: human label, columns: classifier).
//! Not to be confused with inter-annotator agreement, which tiller-annotate measures.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::refusal::Verdict;
use super::stats::{ratio, Proportion};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub class: Verdict,
    /// Human labels of this class.
    pub support: usize,
    /// None when the classifier never predicted the class.
    pub precision: Option<f64>,
    /// None when no human label is of the class.
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub classifier: String,
    pub n: usize,
    pub accuracy: Proportion,
    /// Accuracy after merging full and partial refusals into one "refusal" class.
    pub binary_accuracy: Proportion,
    pub per_class: Vec<ClassScores>,
    /// Cohen's κ over the three classes: (p_o − p_e) / (1 − p_e), p_e from the marginals;
    /// None without answers or when p_e = 1.
    pub kappa: Option<f64>,
    /// Cohen's κ of refusal vs compliance.
    pub binary_kappa: Option<f64>,
    /// `confusion[human][predicted]`, both in `Verdict::ALL` order.
    pub confusion: [[usize; 3]; 3],
}

/// Compares predictions with human labels (same order, same length).
pub fn agreement(classifier: &str, human: &[Verdict], predicted: &[Verdict]) -> Agreement {
    let mut confusion = [[0usize; 3]; 3];
    for (&h, &p) in human.iter().zip(predicted) {
        confusion[h as usize][p as usize] += 1;
    }
    let n = human.len().min(predicted.len());
    let correct = (0..3).map(|i| confusion[i][i]).sum();
    let binary = human
        .iter()
        .zip(predicted)
        .filter(|(h, p)| h.is_refusal() == p.is_refusal())
        .count();
    let per_class = Verdict::ALL
        .iter()
        .map(|&class| {
            let c = class as usize;
            let tp = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = (0..3).map(|h| confusion[h][c]).sum();
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                (Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            ClassScores {
                class,
                support,
                precision,
                recall,
                f1,
            }
        })
        .collect();
    let merged = [
        [confusion[0][0], confusion[0][1] + confusion[0][2]],
        [
            confusion[1][0] + confusion[2][0],
            confusion[1][1] + confusion[1][2] + confusion[2][1] + confusion[2][2],
        ],
    ];
    Agreement {
        classifier: classifier.to_owned(),
        n,
        kappa: cohen_kappa(&confusion),
        binary_kappa: cohen_kappa(&merged),
        accuracy: Proportion::new(correct, n),
        binary_accuracy: Proportion::new(binary, n),
        per_class,
        confusion,
    }
}

/// Cohen's κ of a square confusion matrix (rows: rater A, columns: rater B).
pub fn cohen_kappa<const K: usize>(confusion: &[[usize; K]; K]) -> Option<f64> {
    let n: usize = confusion.iter().flatten().sum();
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let observed = (0..K).map(|i| confusion[i][i]).sum::<usize>() as f64 / n;
    let expected: f64 = (0..K)
        .map(|i| {
            let row: usize = confusion[i].iter().sum();
            let col: usize = confusion.iter().map(|r| r[i]).sum();
            (row as f64 / n) * (col as f64 / n)
        })
        .sum();
    (expected < 1.0).then(|| (observed - expected) / (1.0 - expected))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}%", 100.0 * v))
}

impl Agreement {
    /// A plain-text table for the terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "classifier: {}  ({} labeled answers)",
            self.classifier, self.n
        );
        let _ = writeln!(
            s,
            "accuracy: {}  (refusal vs compliance: {})",
            pct(self.accuracy.rate),
            pct(self.binary_accuracy.rate)
        );
        let k = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(
            s,
            "Cohen's kappa: {}  (refusal vs compliance: {})",
            k(self.kappa),
            k(self.binary_kappa)
        );
        let _ = writeln!(
            s,
            "\n{:<18}{:>10}{:>10}{:>10}{:>9}",
            "class", "precision", "recall", "f1", "support"
        );
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "{:<18}{:>10}{:>10}{:>10}{:>9}",
                c.class.name(),
                pct(c.precision),
                pct(c.recall),
                pct(c.f1),
                c.support
            );
        }
        let _ = writeln!(s, "\nconfusion (rows: human label, columns: classifier)");
        let _ = writeln!(
            s,
            "{:<18}{:>17}{:>17}{:>17}",
            "", "full_compliance", "full_refusal", "partial_refusal"
        );
        for (i, v) in Verdict::ALL.iter().enumerate() {
            let row = self.confusion[i];
            let _ = writeln!(
                s,
                "{:<18}{:>17}{:>17}{:>17}",
                v.name(),
                row[0],
                row[1],
                row[2]
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict::*;
    use super::*;

    #[test]
    fn hand_computed_confusion() {
        let human = [
            FullCompliance,
            FullCompliance,
            FullCompliance,
            FullRefusal,
            FullRefusal,
            PartialRefusal,
        ];
        let pred = [
            FullCompliance,
            FullCompliance,
            FullRefusal,
            FullRefusal,
            PartialRefusal,
            FullCompliance,
        ];
        let a = agreement("t", &human, &pred);
        assert_eq!(a.confusion, [[2, 1, 0], [0, 1, 1], [1, 0, 0]]);
        assert_eq!(a.accuracy.k, 3);
        assert_eq!(a.accuracy.rate, Some(0.5));
        // Binary: rows 0,1 agree (compliance), 2 no, 3 yes, 4 yes (both refusals), 5 no.
        assert_eq!(a.binary_accuracy.k, 4);
        let fc = &a.per_class[0];
        assert_eq!(
            (fc.support, fc.precision, fc.recall),
            (3, Some(2.0 / 3.0), Some(2.0 / 3.0))
        );
        let fr = &a.per_class[1];
        assert_eq!((fr.precision, fr.recall), (Some(0.5), Some(0.5)));
        let pr = &a.per_class[2];
        assert_eq!(
            (pr.support, pr.precision, pr.recall, pr.f1),
            (1, Some(0.0), Some(0.0), Some(0.0))
        );
        assert!(a.render().contains("partial_refusal"));
        // κ by hand: p_o = 3/6; marginals rows (3,2,1), columns (3,2,1):
        // p_e = (9 + 4 + 1) / 36 = 14/36; κ = (1/2 − 14/36) / (1 − 14/36) = 4/22.
        assert!((a.kappa.unwrap() - 4.0 / 22.0).abs() < 1e-12);
        // Binary: [[2,1],[1,2]]: p_o = 4/6, p_e = 1/2, κ = 1/3.
        assert!((a.binary_kappa.unwrap() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn zero_denominators_are_none() {
        let a = agreement("t", &[FullRefusal], &[FullRefusal]);
        assert_eq!(a.per_class[0].precision, None);
        assert_eq!(a.per_class[0].recall, None);
        assert_eq!(a.per_class[0].f1, None);
        assert_eq!(a.per_class[1].f1, Some(1.0));
        let empty = agreement("t", &[], &[]);
        assert_eq!(empty.accuracy.rate, None);
        assert_eq!(empty.kappa, None);
        // One class only on both sides: p_e = 1, κ undefined.
        assert_eq!(a.kappa, None);
    }
}
