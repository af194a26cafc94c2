//! The numbers a reward-model run logs over a set of pairs (TRL's names), and their
//! sums across the ranks of a data-parallel job.

use tch::Kind;
use tiller_model::dist::Collective;

use crate::error::Result;

/// Means over a set of pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub margin: f64,
    pub chosen: f64,
    pub rejected: f64,
}

impl PairMetrics {
    pub(crate) fn from_loss(out: &crate::loss::PairwiseLoss) -> Self {
        PairMetrics {
            loss: out.loss.to_kind(Kind::Double).double_value(&[]),
            accuracy: out.accuracy,
            margin: out.margin,
            chosen: out.chosen,
            rejected: out.rejected,
        }
    }

    /// Sums every rank's metrics (each already weighted by its share of the pairs).
    pub(crate) fn all_reduce_sum(&mut self, collective: &dyn Collective) -> Result<()> {
        if collective.world_size() == 1 {
            return Ok(());
        }
        let mut v = [
            self.loss,
            self.accuracy,
            self.margin,
            self.chosen,
            self.rejected,
        ];
        collective.all_reduce_sum_f64(&mut v)?;
        [
            self.loss,
            self.accuracy,
            self.margin,
            self.chosen,
            self.rejected,
        ] = v;
        Ok(())
    }

    /// self += w · other
    pub(crate) fn add_scaled(&mut self, other: &PairMetrics, w: f64) {
        self.loss += w * other.loss;
        self.accuracy += w * other.accuracy;
        self.margin += w * other.margin;
        self.chosen += w * other.chosen;
        self.rejected += w * other.rejected;
    }
}

/// `(key, value)` under TRL's names, each prefixed (`""` or `"eval_"`).
pub(crate) fn eval_metrics(prefix: &str, m: &PairMetrics) -> Vec<(String, f64)> {
    vec![
        (format!("{prefix}loss"), m.loss),
        (format!("{prefix}accuracy"), m.accuracy),
        (format!("{prefix}margin"), m.margin),
        (format!("{prefix}rewards/chosen"), m.chosen),
        (format!("{prefix}rewards/rejected"), m.rejected),
    ]
}
