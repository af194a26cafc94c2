//! Agreement and Bradley–Terry against values computed by hand (worked in comments).

use tiller_annotate::stats::bradley_terry::{fit_scores, leaderboard};
use tiller_annotate::stats::inter_annotator::{
    agreement, cohen_kappa, krippendorff_alpha, raw_agreement, strict_majority,
};
use tiller_annotate::stats::{AgreementOptions, Comparison, LeaderboardOptions, Rating};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn raw_agreement_and_krippendorff_alpha_by_hand() {
    // Units: [a,a] [a,b] [b,b] [a,a,b].
    // Pairs: 1 agree, 1 disagree, 1 agree, then 3 pairs of which 1 agrees -> 3/6.
    // Coincidences: o_aa = 2 + 1 = 3, o_ab = o_ba = 1 + 1 = 2, o_bb = 2; n_a = 5, n_b = 4, n = 9.
    // alpha = 1 - (n-1) * (o_ab + o_ba) / (2 n_a n_b) = 1 - 8*4/40 = 0.2.
    let units = vec![
        vec!['a', 'a'],
        vec!['a', 'b'],
        vec!['b', 'b'],
        vec!['a', 'a', 'b'],
    ];
    assert!(close(raw_agreement(&units).expect("pairs"), 0.5));
    assert!(close(krippendorff_alpha(&units).expect("alpha"), 0.2));
    // Perfect agreement on two labels gives alpha = 1; one label only leaves it undefined.
    assert!(close(
        krippendorff_alpha(&[vec!['a', 'a'], vec!['b', 'b']]).expect("alpha"),
        1.0
    ));
    assert_eq!(krippendorff_alpha(&[vec!['a', 'a'], vec!['a', 'a']]), None);
    assert_eq!(raw_agreement::<char>(&[]), None);
}

#[test]
fn cohen_kappa_by_hand() {
    // X: a a a a b b b b a b ; Y: a a a b b b b a a a.
    // p_o = 7/10; X marginals a .5 b .5; Y marginals a .6 b .4; p_e = .3 + .2 = .5;
    // kappa = (.7 - .5) / (1 - .5) = 0.4.
    let x = "aaaabbbbab".chars();
    let y = "aaabbbbaaa".chars();
    let pairs: Vec<(char, char)> = x.zip(y).collect();
    assert!(close(cohen_kappa(&pairs).expect("kappa"), 0.4));
    // Systematic disagreement: p_o = 0, p_e = .5 -> kappa = -1.
    assert!(close(
        cohen_kappa(&[('a', 'b'), ('b', 'a')]).expect("kappa"),
        -1.0
    ));
    // Both raters constant and equal: chance agreement is 1, kappa undefined.
    assert_eq!(cohen_kappa(&[('a', 'a'), ('a', 'a')]), None);
}

#[test]
fn report_flags_the_annotator_who_disagrees_with_the_majority() {
    // Raters 1-3 always say 'a', rater 4 always 'b', over 6 units.
    let mut ratings = Vec::new();
    for unit in 0..6 {
        for rater in 1..=4 {
            ratings.push(Rating {
                unit,
                rater,
                label: if rater == 4 { 'b' } else { 'a' },
            });
        }
    }
    let report = agreement(&ratings, AgreementOptions::default());
    assert_eq!(report.units_with_multiple_ratings, 6);
    // Per unit: 6 pairs, 3 agree.
    assert!(close(report.raw_agreement.expect("raw"), 0.5));
    assert_eq!(report.pairs.len(), 6, "every pair shares 6 >= 5 units");
    let pair_14 = report
        .pairs
        .iter()
        .find(|p| p.rater_a == 1 && p.rater_b == 4)
        .expect("pair");
    assert_eq!((pair_14.common_units, pair_14.agreement), (6, 0.0));
    assert_eq!(pair_14.kappa, Some(0.0));
    let flagged: Vec<i64> = report
        .raters
        .iter()
        .filter(|r| r.flagged)
        .map(|r| r.rater)
        .collect();
    assert_eq!(flagged, vec![4]);
    let rater_1 = &report.raters[0];
    assert_eq!(
        (rater_1.compared_units, rater_1.agreement_with_majority),
        (6, Some(1.0))
    );
    // With too little overlap nobody is paired or flagged.
    let strict = AgreementOptions {
        min_pair_overlap: 7,
        min_majority_items: 7,
        flag_below: 0.5,
        item_flag_below: 1.0,
    };
    let report = agreement(&ratings, strict);
    assert!(report.pairs.is_empty() && report.raters.iter().all(|r| !r.flagged));
}

#[test]
fn strict_majority_needs_a_unique_top() {
    assert_eq!(strict_majority(['a', 'b', 'a']), Some('a'));
    assert_eq!(strict_majority(['a', 'b']), None);
    assert_eq!(strict_majority(Vec::<char>::new()), None);
}

fn games(first: &str, second: &str, score: f64, n: usize) -> Vec<Comparison> {
    vec![
        Comparison {
            first: first.into(),
            second: second.into(),
            score
        };
        n
    ]
}

#[test]
fn bradley_terry_two_models_by_hand() {
    // A beats B 3 times, loses once: the MLE has p_A / p_B = 3, so with the geometric
    // mean pinned at 1 the scores are 1000 +/- 200 * log10(3) = 1000 +/- 95.424...
    let mut comparisons = games("A", "B", 1.0, 3);
    comparisons.extend(games("A", "B", 0.0, 1));
    let scores = fit_scores(&comparisons, 0.0);
    let half_gap = 200.0 * 3f64.log10();
    assert!(
        (scores["A"] - (1000.0 + half_gap)).abs() < 1e-6,
        "{scores:?}"
    );
    assert!(
        (scores["B"] - (1000.0 - half_gap)).abs() < 1e-6,
        "{scores:?}"
    );
    // Ties are half wins: 2 wins and 2 ties for A = 3 half-wins to 1. Same fit.
    let mut with_ties = games("A", "B", 1.0, 2);
    with_ties.extend(games("B", "A", 0.5, 2));
    let tied = fit_scores(&with_ties, 0.0);
    assert!((tied["A"] - scores["A"]).abs() < 1e-6 && (tied["B"] - scores["B"]).abs() < 1e-6);
}

#[test]
fn bradley_terry_chain_and_cycle_by_hand() {
    // A-B 2:1 and B-C 2:1 with no A-C games: the likelihood splits per edge, so
    // p_A/p_B = 2 and p_B/p_C = 2; geometric mean 1 puts B at 1000.
    let mut chain = games("A", "B", 1.0, 2);
    chain.extend(games("A", "B", 0.0, 1));
    chain.extend(games("B", "C", 1.0, 2));
    chain.extend(games("C", "B", 1.0, 1));
    let scores = fit_scores(&chain, 0.0);
    let step = 400.0 * 2f64.log10();
    assert!((scores["B"] - 1000.0).abs() < 1e-6, "{scores:?}");
    assert!((scores["A"] - (1000.0 + step)).abs() < 1e-6, "{scores:?}");
    assert!((scores["C"] - (1000.0 - step)).abs() < 1e-6, "{scores:?}");
    // A rock-paper-scissors cycle: everyone equal, with or without the prior.
    let mut cycle = games("A", "B", 1.0, 1);
    cycle.extend(games("B", "C", 1.0, 1));
    cycle.extend(games("C", "A", 1.0, 1));
    for prior in [0.0, 1.0] {
        for score in fit_scores(&cycle, prior).values() {
            assert!((score - 1000.0).abs() < 1e-6);
        }
    }
}

#[test]
fn prior_keeps_a_winless_model_finite_and_bootstrap_brackets_the_estimate() {
    let mut comparisons = games("strong", "weak", 1.0, 8);
    comparisons.extend(games("strong", "mid", 1.0, 5));
    comparisons.extend(games("mid", "strong", 1.0, 3));
    comparisons.extend(games("mid", "weak", 0.5, 2));
    comparisons.extend(games("same", "same", 1.0, 4)); // ignored: no information
    let options = LeaderboardOptions {
        prior_ties: 1.0,
        bootstrap_samples: 300,
        seed: 7,
    };
    let board = leaderboard(&comparisons, options);
    let names: Vec<&str> = board.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(names, ["strong", "mid", "weak"]);
    for row in &board {
        assert!(row.score.is_finite());
        let (low, high) = (row.ci_low.expect("low"), row.ci_high.expect("high"));
        assert!(
            low <= row.score + 1e-9 && row.score <= high + 1e-9,
            "{row:?}"
        );
    }
    assert_eq!(
        (
            board[0].wins,
            board[0].losses,
            board[0].ties,
            board[0].comparisons
        ),
        (13.0, 3.0, 0.0, 16)
    );
    assert_eq!(board[2].ties, 2.0);
    // Same seed, same intervals.
    assert_eq!(board, leaderboard(&comparisons, options));
    let unbootstrapped = leaderboard(
        &comparisons,
        LeaderboardOptions {
            bootstrap_samples: 0,
            ..options
        },
    );
    assert_eq!(unbootstrapped[0].ci_low, None);
}
