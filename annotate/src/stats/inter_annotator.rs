//! Inter-annotator agreement on categorical labels (the four vote outcomes):
//! raw pairwise agreement, Cohen's κ per annotator pair, Krippendorff's α (nominal)
//! overall, each annotator's agreement with the majority of the others, and each item's
//! agreement (so disputed items can be re-queued). Not to be confused with tiller-eval's
//! classifier-versus-humans agreement.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::Serialize;

/// One label given by one annotator to one unit (item).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating<L> {
    pub unit: i64,
    pub rater: i64,
    pub label: L,
}

/// Thresholds for the report.
#[derive(Debug, Clone, Copy)]
pub struct AgreementOptions {
    /// Cohen's κ is reported only for pairs who rated at least this many common items.
    pub min_pair_overlap: usize,
    /// An annotator is judged against the majority only with at least this many items.
    pub min_majority_items: usize,
    /// Annotators whose agreement with the majority is below this are flagged.
    pub flag_below: f64,
    /// Items with two or more ratings whose pairwise agreement is below this are flagged
    /// (the default, 1, flags any disagreement).
    pub item_flag_below: f64,
}

impl Default for AgreementOptions {
    fn default() -> Self {
        AgreementOptions {
            min_pair_overlap: 5,
            min_majority_items: 5,
            flag_below: 0.5,
            item_flag_below: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairAgreement {
    pub rater_a: i64,
    pub rater_b: i64,
    pub common_units: usize,
    pub agreement: f64,
    /// `None` when chance agreement is 1 (both always gave the same single label).
    pub kappa: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RaterAgreement {
    pub rater: i64,
    /// Units where the other raters had a strict majority label.
    pub compared_units: usize,
    pub agreement_with_majority: Option<f64>,
    pub flagged: bool,
}

/// One item (unit) rated two or more times.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemAgreement<L> {
    pub unit: i64,
    pub ratings: usize,
    /// Agreeing rating pairs over all pairs of this item.
    pub agreement: f64,
    /// The strict majority label, if there is one.
    pub majority: Option<L>,
    pub flagged: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgreementReport<L> {
    /// Units with two or more ratings.
    pub units_with_multiple_ratings: usize,
    /// Fraction of agreeing rating pairs over all pairs within units.
    pub raw_agreement: Option<f64>,
    /// Krippendorff's α, nominal metric; `None` without disagreement to expect.
    pub krippendorff_alpha: Option<f64>,
    pub pairs: Vec<PairAgreement>,
    pub raters: Vec<RaterAgreement>,
    /// Items with two or more ratings, by id.
    pub items: Vec<ItemAgreement<L>>,
}

/// Computes the whole report. A rater rating the same unit twice counts once (last wins).
pub fn agreement<L: Copy + Eq + Hash + Ord>(
    ratings: &[Rating<L>],
    options: AgreementOptions,
) -> AgreementReport<L> {
    // unit -> rater -> label, ordered so the output is deterministic.
    let mut units: BTreeMap<i64, BTreeMap<i64, L>> = BTreeMap::new();
    for rating in ratings {
        units
            .entry(rating.unit)
            .or_default()
            .insert(rating.rater, rating.label);
    }
    let multi: Vec<(i64, Vec<L>)> = units
        .iter()
        .filter(|(_, r)| r.len() >= 2)
        .map(|(unit, r)| (*unit, r.values().copied().collect()))
        .collect();
    let items = multi
        .iter()
        .map(|(unit, labels)| {
            // Two or more labels always give at least one pair.
            let agreement = raw_agreement(std::slice::from_ref(labels)).unwrap_or(1.0);
            ItemAgreement {
                unit: *unit,
                ratings: labels.len(),
                agreement,
                majority: strict_majority(labels.iter().copied()),
                flagged: agreement < options.item_flag_below,
            }
        })
        .collect();
    let multi: Vec<Vec<L>> = multi.into_iter().map(|(_, labels)| labels).collect();
    AgreementReport {
        units_with_multiple_ratings: multi.len(),
        raw_agreement: raw_agreement(&multi),
        krippendorff_alpha: krippendorff_alpha(&multi),
        pairs: pair_kappas(&units, options.min_pair_overlap),
        raters: majority_agreement(&units, options),
        items,
    }
}

/// Agreeing pairs over all pairs, pooled across units.
pub fn raw_agreement<L: Eq>(units: &[Vec<L>]) -> Option<f64> {
    let (mut agree, mut total) = (0usize, 0usize);
    for labels in units {
        for i in 0..labels.len() {
            for j in i + 1..labels.len() {
                total += 1;
                agree += usize::from(labels[i] == labels[j]);
            }
        }
    }
    (total > 0).then(|| agree as f64 / total as f64)
}

/// Krippendorff's α for nominal data from the coincidence matrix:
/// α = 1 − (n − 1) · Σ_{c≠k} o_ck / Σ_{c≠k} n_c·n_k, over units with ≥ 2 values.
pub fn krippendorff_alpha<L: Copy + Eq + Hash>(units: &[Vec<L>]) -> Option<f64> {
    let mut disagree = 0.0; // Σ_{c≠k} o_ck
    let mut marginals: HashMap<L, f64> = HashMap::new(); // n_c
    for labels in units.iter().filter(|l| l.len() >= 2) {
        let m = labels.len() as f64;
        for (i, a) in labels.iter().enumerate() {
            *marginals.entry(*a).or_default() += 1.0;
            for (j, b) in labels.iter().enumerate() {
                if i != j && a != b {
                    disagree += 1.0 / (m - 1.0);
                }
            }
        }
    }
    let n: f64 = marginals.values().sum();
    let same: f64 = marginals.values().map(|c| c * c).sum();
    let expected = n * n - same; // Σ_{c≠k} n_c n_k
    (expected > 0.0).then(|| 1.0 - (n - 1.0) * disagree / expected)
}

/// Cohen's κ for two raters' labels on their common units.
pub fn cohen_kappa<L: Copy + Eq + Hash>(pairs: &[(L, L)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let observed = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut first: HashMap<L, f64> = HashMap::new();
    let mut second: HashMap<L, f64> = HashMap::new();
    for (a, b) in pairs {
        *first.entry(*a).or_default() += 1.0 / n;
        *second.entry(*b).or_default() += 1.0 / n;
    }
    let chance: f64 = first
        .iter()
        .map(|(label, p)| p * second.get(label).copied().unwrap_or(0.0))
        .sum();
    (chance < 1.0 - 1e-12).then(|| (observed - chance) / (1.0 - chance))
}

fn pair_kappas<L: Copy + Eq + Hash>(
    units: &BTreeMap<i64, BTreeMap<i64, L>>,
    min_overlap: usize,
) -> Vec<PairAgreement> {
    let mut common: BTreeMap<(i64, i64), Vec<(L, L)>> = BTreeMap::new();
    for raters in units.values() {
        let labelled: Vec<(i64, L)> = raters.iter().map(|(r, l)| (*r, *l)).collect();
        for (i, (ra, la)) in labelled.iter().enumerate() {
            for (rb, lb) in &labelled[i + 1..] {
                common.entry((*ra, *rb)).or_default().push((*la, *lb));
            }
        }
    }
    common
        .into_iter()
        .filter(|(_, pairs)| pairs.len() >= min_overlap.max(1))
        .map(|((rater_a, rater_b), pairs)| PairAgreement {
            rater_a,
            rater_b,
            common_units: pairs.len(),
            agreement: pairs.iter().filter(|(a, b)| a == b).count() as f64 / pairs.len() as f64,
            kappa: cohen_kappa(&pairs),
        })
        .collect()
}

fn majority_agreement<L: Copy + Eq + Hash + Ord>(
    units: &BTreeMap<i64, BTreeMap<i64, L>>,
    options: AgreementOptions,
) -> Vec<RaterAgreement> {
    let mut tallies: BTreeMap<i64, (usize, usize)> = BTreeMap::new(); // rater -> (compared, agreed)
    for raters in units.values() {
        for (rater, label) in raters {
            let entry = tallies.entry(*rater).or_default();
            let others = raters.iter().filter(|(r, _)| *r != rater).map(|(_, l)| *l);
            if let Some(majority) = strict_majority(others) {
                entry.0 += 1;
                entry.1 += usize::from(majority == *label);
            }
        }
    }
    tallies
        .into_iter()
        .map(|(rater, (compared, agreed))| {
            let rate = (compared > 0).then(|| agreed as f64 / compared as f64);
            let flagged = compared >= options.min_majority_items
                && rate.is_some_and(|r| r < options.flag_below);
            RaterAgreement {
                rater,
                compared_units: compared,
                agreement_with_majority: rate,
                flagged,
            }
        })
        .collect()
}

/// The most frequent label if it is strictly more frequent than every other; `None` for
/// an empty input or a tie at the top.
pub fn strict_majority<L: Copy + Eq + Hash + Ord>(
    labels: impl IntoIterator<Item = L>,
) -> Option<L> {
    let mut counts: BTreeMap<L, usize> = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    let top = counts.values().copied().max()?;
    let mut leaders = counts.into_iter().filter(|(_, c)| *c == top);
    let (label, _) = leaders.next()?;
    leaders.next().is_none().then_some(label)
}
