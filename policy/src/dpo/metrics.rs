//! The numbers a DPO run logs, under TRL's names.

use tiller_model::dist::Collective;

use crate::error::Result;

/// Means over a set of pairs, under TRL's names.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DpoMetrics {
    pub loss: f64,
    pub rewards_chosen: f64,
    pub rewards_rejected: f64,
    pub accuracy: f64,
    pub logps_chosen: f64,
    pub logps_rejected: f64,
    pub logits_chosen: f64,
    pub logits_rejected: f64,
}

impl DpoMetrics {
    pub(crate) fn add_scaled(&mut self, o: &DpoMetrics, w: f64) {
        self.loss += w * o.loss;
        self.rewards_chosen += w * o.rewards_chosen;
        self.rewards_rejected += w * o.rewards_rejected;
        self.accuracy += w * o.accuracy;
        self.logps_chosen += w * o.logps_chosen;
        self.logps_rejected += w * o.logps_rejected;
        self.logits_chosen += w * o.logits_chosen;
        self.logits_rejected += w * o.logits_rejected;
    }

    /// Sums every rank's metrics (each already weighted by its share of the pairs).
    pub(crate) fn all_reduce_sum(&mut self, collective: &dyn Collective) -> Result<()> {
        if collective.world_size() == 1 {
            return Ok(());
        }
        let mut v = [
            self.loss,
            self.rewards_chosen,
            self.rewards_rejected,
            self.accuracy,
            self.logps_chosen,
            self.logps_rejected,
            self.logits_chosen,
            self.logits_rejected,
        ];
        collective.all_reduce_sum_f64(&mut v)?;
        [
            self.loss,
            self.rewards_chosen,
            self.rewards_rejected,
            self.accuracy,
            self.logps_chosen,
            self.logps_rejected,
            self.logits_chosen,
            self.logits_rejected,
        ] = v;
        Ok(())
    }

    /// `(key, value)` with TRL's names, each prefixed (`""` or `"eval_"`).
    pub fn named(&self, prefix: &str) -> Vec<(String, f64)> {
        [
            ("loss", self.loss),
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            (
                "rewards/margins",
                self.rewards_chosen - self.rewards_rejected,
            ),
            ("rewards/accuracies", self.accuracy),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
            ("logits/chosen", self.logits_chosen),
            ("logits/rejected", self.logits_rejected),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }
}
