//! The numbers a KTO run logs, under TRL's names. As `KTOTrainer` does, rewards, log-probs
//! and logits are summed per side (desirable = `chosen`, undesirable = `rejected`) and
//! divided by that side's count over the whole logging window or eval set; `loss` and
//! `kl` are means over micro-batches (weighted by size on the eval set). A side with no
//! rows in the window is left out, as TRL does.

/// Sums over the desirable or the undesirable rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SideSums {
    pub count: f64,
    pub rewards: f64,
    pub logps: f64,
    /// Sum of the completion logits over positions and vocabulary.
    pub logits: f64,
    /// Completion tokens × vocabulary, the divisor of `logits`.
    pub logit_entries: f64,
}

impl SideSums {
    fn add(&mut self, o: &SideSums) {
        self.count += o.count;
        self.rewards += o.rewards;
        self.logps += o.logps;
        self.logits += o.logits;
        self.logit_entries += o.logit_entries;
    }
}

/// Metrics accumulated over micro-batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KtoTally {
    /// Σ weight, and Σ weight·loss, Σ weight·kl.
    pub weight: f64,
    pub loss: f64,
    pub kl: f64,
    pub chosen: SideSums,
    pub rejected: SideSums,
}

impl KtoTally {
    /// Every rank's tally summed (a no-op in a world of one).
    pub fn reduce(
        &mut self,
        collective: &dyn tiller_model::dist::Collective,
    ) -> tiller_model::Result<()> {
        let mut flat = vec![self.weight, self.loss, self.kl];
        for s in [&self.chosen, &self.rejected] {
            flat.extend([s.count, s.rewards, s.logps, s.logits, s.logit_entries]);
        }
        collective.all_reduce_sum_f64(&mut flat)?;
        [self.weight, self.loss, self.kl] = [flat[0], flat[1], flat[2]];
        for (s, v) in [&mut self.chosen, &mut self.rejected]
            .into_iter()
            .zip(flat[3..].chunks(5))
        {
            [s.count, s.rewards, s.logps, s.logits, s.logit_entries] =
                [v[0], v[1], v[2], v[3], v[4]];
        }
        Ok(())
    }

    pub fn add(&mut self, o: &KtoTally) {
        self.weight += o.weight;
        self.loss += o.loss;
        self.kl += o.kl;
        self.chosen.add(&o.chosen);
        self.rejected.add(&o.rejected);
    }

    /// The means.
    pub fn metrics(&self) -> KtoMetrics {
        let w = self.weight.max(1e-12);
        let per = |s: &SideSums, v: f64| {
            if s.count > 0.0 {
                v / s.count
            } else {
                f64::NAN
            }
        };
        let logits = |s: &SideSums| {
            if s.logit_entries > 0.0 {
                s.logits / s.logit_entries
            } else {
                f64::NAN
            }
        };
        KtoMetrics {
            loss: self.loss / w,
            kl: self.kl / w,
            rewards_chosen: per(&self.chosen, self.chosen.rewards),
            rewards_rejected: per(&self.rejected, self.rejected.rewards),
            logps_chosen: per(&self.chosen, self.chosen.logps),
            logps_rejected: per(&self.rejected, self.rejected.logps),
            logits_chosen: logits(&self.chosen),
            logits_rejected: logits(&self.rejected),
            count_chosen: self.chosen.count,
            count_rejected: self.rejected.count,
        }
    }
}

/// Means over a window of steps or a data set; NaN for a side without rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KtoMetrics {
    pub loss: f64,
    /// The clamped batch KL estimate z0.
    pub kl: f64,
    pub rewards_chosen: f64,
    pub rewards_rejected: f64,
    pub logps_chosen: f64,
    pub logps_rejected: f64,
    pub logits_chosen: f64,
    pub logits_rejected: f64,
    pub count_chosen: f64,
    pub count_rejected: f64,
}

impl KtoMetrics {
    /// `rewards/chosen − rewards/rejected` (NaN unless both sides have rows).
    pub fn margin(&self) -> f64 {
        self.rewards_chosen - self.rewards_rejected
    }

    /// `(key, value)` with TRL's names, each prefixed (`""` or `"eval_"`); keys of a side
    /// without rows are left out.
    pub fn named(&self, prefix: &str) -> Vec<(String, f64)> {
        [
            ("loss", self.loss),
            ("kl", self.kl),
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/margins", self.margin()),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
            ("logits/chosen", self.logits_chosen),
            ("logits/rejected", self.logits_rejected),
            ("count/chosen", self.count_chosen),
            ("count/rejected", self.count_rejected),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_nan())
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }
}
