//! The step metrics GRPO and RLOO share, typed, each under its TRL name in one place
//! ([`StepMetrics::entries`]), so a misspelt key is a compile error rather than a NaN:
//!
//! - the update metrics (`objective/entropy`, `policy/approxkl_avg`,
//!   `policy/clipfrac_avg`, `loss/policy_avg`, `val/ratio`) are means over the kept
//!   completion tokens of every micro-batch of every update of the step — a sequence-level
//!   quantity (RLOO's ratio) counts once per token of its sequence, and truncated
//!   completions left out of the loss are left out of every metric alike;
//! - `loss` and `grad_norm` are means over the step's updates;
//! - `objective/kl` is the mean summed KL of a completion, `kl` the per-token one, and
//!   `objective/rlhf_reward = objective/scores + objective/non_score_reward`
//!   with `objective/non_score_reward = −beta · objective/kl`.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::rl::advantages::mean;
use crate::rl::group::{GroupParams, MicroTerms, StepAdvantages};

/// The update metrics (module docs): token-weighted sums over a step, or their means.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct UpdateTerms {
    pub entropy: f64,
    pub approxkl: f64,
    pub clipfrac: f64,
    pub policy_loss: f64,
    pub ratio: f64,
}

/// Kept-token-weighted sums of the update metrics over a step.
#[derive(Default)]
pub(crate) struct UpdateStats {
    pub sums: UpdateTerms,
    pub kl_sum: Option<f64>,
    pub tokens: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub updates: u64,
}

impl UpdateStats {
    pub(crate) fn add(&mut self, t: &MicroTerms, mask: &Tensor) -> Result<()> {
        let sum =
            |x: &Tensor| -> Result<f64> { Ok((x * mask).sum(Kind::Double).f_double_value(&[])?) };
        let s = &mut self.sums;
        s.entropy += sum(&t.entropy)?;
        s.approxkl += sum(&t.approxkl)?;
        s.clipfrac += sum(&t.clipped)?;
        s.policy_loss += sum(&t.policy_loss)?;
        s.ratio += sum(&t.ratio)?;
        if let Some(kl) = &t.kl {
            *self.kl_sum.get_or_insert(0.0) += sum(kl)?;
        }
        self.tokens += mask.sum(Kind::Double).f_double_value(&[])?;
        Ok(())
    }

    /// Every rank's token sums and kept tokens summed, so [`UpdateStats::means`] are the
    /// whole step's; returns the step's generated tokens per sample over every rank.
    /// (`loss` and `grad_norm` are the same on every rank already.)
    pub(crate) fn reduce(
        &mut self,
        collective: &dyn tiller_model::dist::Collective,
        generated_tokens: usize,
        samples: usize,
    ) -> Result<f64> {
        let s = &mut self.sums;
        let mut v = vec![
            s.entropy,
            s.approxkl,
            s.clipfrac,
            s.policy_loss,
            s.ratio,
            self.kl_sum.unwrap_or(0.0),
            f64::from(u8::from(self.kl_sum.is_some())),
            self.tokens,
            generated_tokens as f64,
            samples as f64,
        ];
        collective.all_reduce_sum_f64(&mut v)?;
        [s.entropy, s.approxkl, s.clipfrac, s.policy_loss, s.ratio] =
            [v[0], v[1], v[2], v[3], v[4]];
        self.kl_sum = (v[6] > 0.0).then_some(v[5]);
        self.tokens = v[7];
        Ok(v[8] / v[9].max(1.0))
    }

    pub(crate) fn means(&self) -> UpdateTerms {
        let n = self.tokens.max(1.0);
        let s = &self.sums;
        UpdateTerms {
            entropy: s.entropy / n,
            approxkl: s.approxkl / n,
            clipfrac: s.clipfrac / n,
            policy_loss: s.policy_loss / n,
            ratio: s.ratio / n,
        }
    }
}

/// The KL metrics of a step with a reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KlMetrics {
    /// `objective/kl`: the mean summed KL of a completion.
    pub sequence: f64,
    /// `kl`: the per-token KL.
    pub token: f64,
}

/// A step's metrics, typed; [`StepMetrics::entries`] is the one place they get TRL's names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepMetrics {
    pub scores: f64,
    pub non_score_reward: f64,
    pub rlhf_reward: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub update: UpdateTerms,
    /// None without a reference: nothing KL-named is logged.
    pub kl: Option<KlMetrics>,
    /// The method's own (named by the method, e.g. GRPO's `frac_reward_zero_std`).
    pub method: Vec<(&'static str, f64)>,
}

impl StepMetrics {
    /// The metrics under TRL's names, as logged.
    pub(crate) fn entries(&self) -> Vec<(&'static str, f64)> {
        let u = &self.update;
        let mut out = vec![
            ("objective/scores", self.scores),
            ("objective/non_score_reward", self.non_score_reward),
            ("objective/rlhf_reward", self.rlhf_reward),
            ("loss", self.loss),
            ("grad_norm", self.grad_norm),
            ("objective/entropy", u.entropy),
            ("policy/approxkl_avg", u.approxkl),
            ("policy/clipfrac_avg", u.clipfrac),
            ("loss/policy_avg", u.policy_loss),
            ("val/ratio", u.ratio),
        ];
        out.extend(self.method.iter().copied());
        if let Some(kl) = self.kl {
            out.extend([("objective/kl", kl.sequence), ("kl", kl.token)]);
        }
        out
    }
}

/// The step's metrics (see the module docs for their definitions).
pub(crate) fn step_metrics(
    p: &GroupParams,
    scores: &[f64],
    adv: &StepAdvantages,
    stats: &UpdateStats,
    tokens_per_sample: f64,
    with_reference: bool,
) -> StepMetrics {
    let mean_score = mean(scores);
    let (kl_token, kl_seq) = match (&adv.sequence_kl, stats.kl_sum) {
        (Some(seq), _) => (mean(seq) / tokens_per_sample.max(1.0), mean(seq)),
        (None, Some(sum)) => {
            let per_token = sum / stats.tokens.max(1.0);
            (per_token, per_token * tokens_per_sample)
        }
        (None, None) => (0.0, 0.0),
    };
    let updates = stats.updates.max(1) as f64;
    StepMetrics {
        scores: mean_score,
        non_score_reward: -p.beta * kl_seq,
        rlhf_reward: mean_score - p.beta * kl_seq,
        loss: stats.loss / updates,
        grad_norm: stats.grad_norm / updates,
        update: stats.means(),
        kl: with_reference.then_some(KlMetrics {
            sequence: kl_seq,
            token: kl_token,
        }),
        method: adv.metrics.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::loss::ClipRange;

    fn t(rows: &[&[f32]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    }

    /// Terms whose every metric is `values` (and no loss to speak of).
    fn terms(values: &Tensor, kl: Option<Tensor>) -> MicroTerms {
        MicroTerms {
            loss: Tensor::from_slice(&[0.0f32]),
            policy_loss: values.shallow_clone(),
            ratio: values.shallow_clone(),
            clipped: values.shallow_clone(),
            approxkl: values.shallow_clone(),
            entropy: values.shallow_clone(),
            kl,
        }
    }

    fn params(beta: f64) -> GroupParams {
        GroupParams {
            num_generations: 2,
            num_iterations: 1,
            num_minibatches: 1,
            micro_batch_size: None,
            mask_truncated_completions: true,
            beta,
            clip: ClipRange {
                low: 0.2,
                high: 0.2,
            },
        }
    }

    #[test]
    fn update_metrics_are_means_over_kept_tokens_of_every_micro_batch() {
        let mut stats = UpdateStats::default();
        // Micro-batch 1: two tokens of row 0 count; row 1 is a truncated completion left
        // out of the loss (mask 0), so its huge values count for nothing.
        let mask1 = t(&[&[1.0, 1.0, 0.0], &[0.0, 0.0, 0.0]]);
        stats
            .add(
                &terms(&t(&[&[1.0, 2.0, 50.0], &[99.0, 99.0, 99.0]]), None),
                &mask1,
            )
            .unwrap();
        // Micro-batch 2: one token.
        let mask2 = t(&[&[1.0, 0.0, 0.0]]);
        stats
            .add(&terms(&t(&[&[4.0, 8.0, 8.0]]), None), &mask2)
            .unwrap();
        let m = stats.means();
        for mean in [m.entropy, m.approxkl, m.clipfrac, m.policy_loss, m.ratio] {
            // (1 + 2 + 4) / 3 tokens: weighted by token, not averaged per micro-batch.
            assert!((mean - 7.0 / 3.0).abs() < 1e-9, "{m:?}");
        }
    }

    #[test]
    fn a_sequence_ratio_counts_once_per_token_of_its_sequence() {
        // RLOO's terms are per sequence, broadcast over the sequence's tokens: a 3-token
        // sequence with ratio 2 and a 1-token one with ratio 1 give (3·2 + 1)/4.
        let mask = t(&[&[1.0, 1.0, 1.0], &[1.0, 0.0, 0.0]]);
        let seq = Tensor::from_slice(&[2.0f32, 1.0]);
        let per_token = seq.unsqueeze(1) * &mask;
        let mut stats = UpdateStats::default();
        stats.add(&terms(&per_token, None), &mask).unwrap();
        let ratio = stats.means().ratio;
        assert!((ratio - 7.0 / 4.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn objective_metrics_are_defined_one_way_for_both_methods() {
        let scores = [1.0, 3.0];
        let mut stats = UpdateStats {
            loss: 0.6,
            grad_norm: 4.0,
            updates: 2,
            tokens: 8.0,
            ..UpdateStats::default()
        };
        // RLOO: summed KL per completion from its advantages; 4 tokens per completion.
        let rloo = StepAdvantages {
            advantages: vec![-1.0, 1.0],
            sequence_kl: Some(vec![0.4, 0.8]),
            metrics: vec![],
        };
        let m = step_metrics(&params(0.5), &scores, &rloo, &stats, 4.0, true);
        let kl = m.kl.unwrap();
        assert!((kl.sequence - 0.6).abs() < 1e-12);
        assert!((kl.token - 0.15).abs() < 1e-12);
        assert!((m.rlhf_reward - (2.0 - 0.5 * 0.6)).abs() < 1e-12);
        assert!((m.loss - 0.3).abs() < 1e-12);
        assert!((m.grad_norm - 2.0).abs() < 1e-12);
        // Every metric is logged once, under its TRL name.
        let entries = m.entries();
        let logged = |k: &str| entries.iter().filter(|(key, _)| *key == k).count();
        for key in ["objective/kl", "kl", "objective/rlhf_reward", "val/ratio"] {
            assert_eq!(logged(key), 1, "{key}");
        }
        assert_eq!(entries.len(), 12);
        // GRPO: per-token KL from its loss terms (sum over 8 kept tokens = 1.2).
        stats.kl_sum = Some(1.2);
        let grpo = StepAdvantages {
            sequence_kl: None,
            ..rloo
        };
        let m = step_metrics(&params(0.5), &scores, &grpo, &stats, 4.0, true);
        let kl = m.kl.unwrap();
        assert!((kl.token - 0.15).abs() < 1e-12);
        assert!((kl.sequence - 0.6).abs() < 1e-12);
        assert!((m.rlhf_reward - (2.0 + m.non_score_reward)).abs() < 1e-12);
        // Without a reference nothing KL-named is logged.
        let m = step_metrics(&params(0.0), &scores, &grpo, &stats, 4.0, false);
        let entries = m.entries();
        assert!(
            m.kl.is_none()
                && !entries
                    .iter()
                    .any(|(k, _)| *k == "kl" || *k == "objective/kl")
        );
    }
}
