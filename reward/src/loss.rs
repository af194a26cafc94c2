//! Bradley–Terry pairwise loss, as TRL's RewardTrainer computes it.

use tch::{Kind, Tensor};

/// Loss and the metrics TRL logs for a batch of pairs.
#[derive(Debug)]
pub struct PairwiseLoss {
    pub loss: Tensor,
    /// Share of pairs with r_chosen > r_rejected.
    pub accuracy: f64,
    /// Mean r_chosen − r_rejected.
    pub margin: f64,
    pub chosen: f64,
    pub rejected: f64,
}

/// −log σ(r_c − r_r − m), averaged, plus `center_coef` · mean((r_c + r_r)²) when set
/// (reward centering keeps rewards near zero).
pub fn bradley_terry(
    chosen: &Tensor,
    rejected: &Tensor,
    margin: Option<&Tensor>,
    center_coef: Option<f64>,
) -> PairwiseLoss {
    let diff = chosen - rejected;
    let shifted = match margin {
        Some(m) => &diff - m,
        None => diff.shallow_clone(),
    };
    let mut loss = -shifted.log_sigmoid().mean(Kind::Float);
    if let Some(coef) = center_coef {
        loss = loss + (chosen + rejected).square().mean(Kind::Float) * coef;
    }
    let scalar = |t: Tensor| t.to_kind(Kind::Double).double_value(&[]);
    PairwiseLoss {
        loss,
        accuracy: scalar(diff.gt(0.0).to_kind(Kind::Float).mean(Kind::Float)),
        margin: scalar(diff.detach().mean(Kind::Float)),
        chosen: scalar(chosen.detach().mean(Kind::Float)),
        rejected: scalar(rejected.detach().mean(Kind::Float)),
    }
}
