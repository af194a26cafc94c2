//! One DPO micro-batch, written out: collate the pairs, take the reference log-probs
//! (cached or a no-grad pass), run the policy, and compute the configured loss and
//! TRL's metrics; and the evaluation over a set, sharded across ranks.

use tch::{Kind, Tensor};
use tiller_data::TokenizedPair;
use tiller_model::dist::Collective;

use crate::dpo::batch::{logp_kind, pair_logps, PairBatch};
use crate::dpo::config::DpoConfig;
use crate::dpo::loss::{
    bco_batch_mean, has_chosen_nll, loss_with, DpoLoss, PairLogps, RunningMean,
};
use crate::dpo::metrics::DpoMetrics;
use crate::error::Result;
use crate::reference::ReferenceLogps;
use crate::trainee::Trainee;

/// What the loop's micro-batches share: the config, the world, and the running counts.
pub(crate) struct Ctx<'a> {
    pub config: &'a DpoConfig,
    pub collective: &'a dyn Collective,
    pub pad_id: i64,
    pub reference_forwards: u64,
    pub bco: RunningMean,
}

impl Ctx<'_> {
    pub(crate) fn batch(
        &self,
        set: &[TokenizedPair],
        indices: &[usize],
        trainee: &Trainee,
    ) -> Result<PairBatch> {
        let picked: Vec<&TokenizedPair> = indices.iter().map(|&i| &set[i]).collect();
        let d = &self.config.data;
        PairBatch::new(
            &picked,
            d.collation,
            d.max_seq_len,
            self.pad_id,
            trainee.lm.device(),
        )
    }

    /// Reference log-probs (chosen, rejected) of a batch, without gradients.
    pub(crate) fn reference(
        &mut self,
        reference: &ReferenceLogps,
        trainee: &Trainee,
        b: &PairBatch,
        indices: &[usize],
        eval: bool,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let (kind, device) = (logp_kind(trainee.lm.kind()), trainee.lm.device());
        if let Some(cached) = reference.cached(eval, indices, kind, device)? {
            return Ok(Some(cached));
        }
        let live = reference.run(trainee, |lm| {
            let s = pair_logps(lm, b)?;
            Ok((s.chosen, s.rejected))
        })?;
        self.reference_forwards += u64::from(live.is_some());
        Ok(live)
    }

    /// Updates `bco_pair`'s running mean with a micro-batch's reward mean over `count`
    /// values. As one rank of several it is the whole micro-batch's (sums over every
    /// rank), so every rank holds one process's δ; a rank without pairs in the
    /// micro-batch joins with `(0.0, 0)`.
    pub(crate) fn update_bco(&mut self, mean: f64, count: u64) -> Result<()> {
        let (mut mean, mut count) = (mean, count);
        if self.collective.world_size() > 1 {
            let mut sums = [mean * count as f64, count as f64];
            self.collective.all_reduce_sum_f64(&mut sums)?;
            count = sums[1] as u64;
            mean = sums[0] / sums[1].max(1.0);
        }
        self.bco.update(mean, count);
        Ok(())
    }

    /// The chosen answers' completion tokens of the pairs `indices` (NLL(yw)'s normaliser).
    pub(crate) fn chosen_tokens(
        &self,
        set: &[TokenizedPair],
        indices: &[usize],
        trainee: &Trainee,
    ) -> Result<f64> {
        if indices.is_empty() {
            return Ok(0.0);
        }
        let b = self.batch(set, indices, trainee)?;
        let (chosen, _) = b.token_counts(Kind::Double, tch::Device::Cpu);
        Ok(chosen.sum(Kind::Double).f_double_value(&[])?)
    }

    /// The loss and metrics of one micro-batch; `nll_tokens` as [`loss_with`] takes it.
    pub(crate) fn step_loss(
        &mut self,
        reference: &ReferenceLogps,
        trainee: &Trainee,
        set: &[TokenizedPair],
        indices: &[usize],
        eval: bool,
        nll_tokens: Option<f64>,
    ) -> Result<(Tensor, DpoMetrics, usize)> {
        let b = self.batch(set, indices, trainee)?;
        let refs = self.reference(reference, trainee, &b, indices, eval)?;
        let s = pair_logps(&trainee.lm.model, &b)?;
        let (nc, nr) = b.token_counts(s.chosen.kind(), s.chosen.device());
        let (ref_chosen, ref_rejected) = refs.map_or((None, None), |(c, r)| (Some(c), Some(r)));
        let inputs = PairLogps {
            chosen: s.chosen,
            rejected: s.rejected,
            ref_chosen,
            ref_rejected,
            chosen_tokens: nc,
            rejected_tokens: nr,
        };
        let params = &self.config.loss;
        // `bco_pair`'s δ is the trainer's running mean (saved in dpo_state.json).
        let bco_delta = match params.kind {
            DpoLoss::BcoPair => {
                if !eval {
                    let (mean, count) = bco_batch_mean(&inputs, params.beta)?;
                    self.update_bco(mean, count)?;
                }
                Some(self.bco.mean)
            }
            _ => None,
        };
        let parts = loss_with(&inputs, params, bco_delta, nll_tokens)?;
        let m = tch::no_grad(|| -> Result<DpoMetrics> {
            let mean = |t: &Tensor| {
                t.to_kind(Kind::Double)
                    .mean(Kind::Double)
                    .f_double_value(&[])
            };
            Ok(DpoMetrics {
                loss: mean(&parts.loss.detach())?,
                rewards_chosen: mean(&parts.chosen_rewards)?,
                rewards_rejected: mean(&parts.rejected_rewards)?,
                accuracy: mean(&parts.chosen_rewards.gt_tensor(&parts.rejected_rewards))?,
                logps_chosen: mean(&inputs.chosen.detach())?,
                logps_rejected: mean(&inputs.rejected.detach())?,
                logits_chosen: s.logits_chosen,
                logits_rejected: s.logits_rejected,
            })
        })?;
        Ok((parts.loss, m, b.num_tokens()))
    }

    /// Mean metrics over `set` in file order, without gradients or dropout; rank r of a
    /// data-parallel job scores chunks r, r + world, ... and the sums are reduced.
    pub(crate) fn evaluate(
        &mut self,
        reference: &ReferenceLogps,
        trainee: &Trainee,
        set: &[TokenizedPair],
    ) -> Result<DpoMetrics> {
        trainee.set_training(false);
        let indices: Vec<usize> = (0..set.len()).collect();
        let mut sum = DpoMetrics::default();
        let (rank, world) = (self.collective.rank(), self.collective.world_size());
        let per_rank = self.config.train.batch_size;
        let nll = world > 1 && has_chosen_nll(&self.config.loss);
        // A global batch is `world` chunks, one a rank; NLL(yw)'s token mean is over the
        // global batch, as in training.
        for global in indices.chunks(per_rank * world) {
            let chunk = global.chunks(per_rank).nth(rank).unwrap_or(&[]);
            let mut nll_tokens = None;
            if nll {
                let mut tokens = [self.chosen_tokens(set, chunk, trainee)?];
                self.collective.all_reduce_sum_f64(&mut tokens)?;
                let share = chunk.len() as f64 / global.len() as f64;
                nll_tokens = Some(tokens[0].max(1.0) * share);
            }
            if chunk.is_empty() {
                continue;
            }
            let (_, m, _) =
                tch::no_grad(|| self.step_loss(reference, trainee, set, chunk, true, nll_tokens))?;
            sum.add_scaled(&m, chunk.len() as f64);
        }
        sum.all_reduce_sum(self.collective)?;
        let mut mean = DpoMetrics::default();
        mean.add_scaled(&sum, 1.0 / set.len().max(1) as f64);
        Ok(mean)
    }
}
