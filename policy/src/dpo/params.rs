//! `[loss]` of dpo.toml: which DPO-family loss and its coefficients. Users write TRL's
//! flat keys (`kind`, `beta`, `label_smoothing`, `simpo_gamma`, `cpo_alpha`,
//! `orpo_lambda`, `discopop_tau`, `rpo_alpha`); they are read into [`DpoLoss`], whose
//! variants carry their own coefficients, so a loss sees only what it uses. A key that
//! does not apply to the chosen loss is an error naming the key. Defaults follow TRL.

use serde::{Deserialize, Serialize};

/// `loss.kind` in dpo.toml, with the coefficients of that loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DpoLoss {
    /// ε (`label_smoothing`, conservative DPO) in [0, 0.5).
    Sigmoid {
        label_smoothing: f64,
    },
    /// ε (`label_smoothing`) in [0, 0.5).
    Robust {
        label_smoothing: f64,
    },
    Hinge,
    Ipo,
    SigmoidNorm,
    /// δ, the running mean of the rewards, is the trainer's state, not a coefficient.
    BcoPair,
    NcaPair,
    ApoZero,
    ApoDown,
    SppoHard,
    /// τ (`discopop_tau`).
    Discopop {
        tau: f64,
    },
    /// γ (`simpo_gamma`): the target reward margin.
    Simpo {
        gamma: f64,
        label_smoothing: f64,
    },
    /// α (`cpo_alpha`): the weight of the NLL on the chosen answers.
    Cpo {
        alpha: f64,
        label_smoothing: f64,
    },
    /// λ (`orpo_lambda`): the weight of the odds-ratio term.
    Orpo {
        lambda: f64,
    },
}

/// Every `kind`, as written in dpo.toml.
pub const DPO_LOSS_NAMES: [&str; 14] = [
    "sigmoid",
    "robust",
    "hinge",
    "ipo",
    "sigmoid_norm",
    "bco_pair",
    "nca_pair",
    "apo_zero",
    "apo_down",
    "sppo_hard",
    "discopop",
    "simpo",
    "cpo",
    "orpo",
];

const SIMPO_GAMMA: f64 = 0.5;
const CPO_ALPHA: f64 = 1.0;
const ORPO_LAMBDA: f64 = 0.1;
const DISCOPOP_TAU: f64 = 0.05;
const BETA: f64 = 0.1;

impl DpoLoss {
    /// Whether the loss compares against a reference model (else no reference pass runs).
    pub fn needs_reference(self) -> bool {
        match self {
            DpoLoss::Simpo { .. } | DpoLoss::Cpo { .. } | DpoLoss::Orpo { .. } => false,
            DpoLoss::Sigmoid { .. }
            | DpoLoss::Robust { .. }
            | DpoLoss::Hinge
            | DpoLoss::Ipo
            | DpoLoss::SigmoidNorm
            | DpoLoss::BcoPair
            | DpoLoss::NcaPair
            | DpoLoss::ApoZero
            | DpoLoss::ApoDown
            | DpoLoss::SppoHard
            | DpoLoss::Discopop { .. } => true,
        }
    }

    /// `kind` as written in dpo.toml.
    pub fn name(&self) -> &'static str {
        match self {
            DpoLoss::Sigmoid { .. } => "sigmoid",
            DpoLoss::Robust { .. } => "robust",
            DpoLoss::Hinge => "hinge",
            DpoLoss::Ipo => "ipo",
            DpoLoss::SigmoidNorm => "sigmoid_norm",
            DpoLoss::BcoPair => "bco_pair",
            DpoLoss::NcaPair => "nca_pair",
            DpoLoss::ApoZero => "apo_zero",
            DpoLoss::ApoDown => "apo_down",
            DpoLoss::SppoHard => "sppo_hard",
            DpoLoss::Discopop { .. } => "discopop",
            DpoLoss::Simpo { .. } => "simpo",
            DpoLoss::Cpo { .. } => "cpo",
            DpoLoss::Orpo { .. } => "orpo",
        }
    }

    /// The loss called `name` with TRL's default coefficients; None for an unknown name.
    pub fn named(name: &str) -> Option<DpoLoss> {
        let table = LossTable {
            kind: Some(name.to_owned()),
            ..LossTable::default()
        };
        DpoParams::try_from(table).ok().map(|p| p.kind)
    }

    /// ε of the losses that smooth their labels.
    pub fn label_smoothing(&self) -> Option<f64> {
        match *self {
            DpoLoss::Sigmoid { label_smoothing }
            | DpoLoss::Robust { label_smoothing }
            | DpoLoss::Simpo {
                label_smoothing, ..
            }
            | DpoLoss::Cpo {
                label_smoothing, ..
            } => Some(label_smoothing),
            DpoLoss::Hinge
            | DpoLoss::Ipo
            | DpoLoss::SigmoidNorm
            | DpoLoss::BcoPair
            | DpoLoss::NcaPair
            | DpoLoss::ApoZero
            | DpoLoss::ApoDown
            | DpoLoss::SppoHard
            | DpoLoss::Discopop { .. }
            | DpoLoss::Orpo { .. } => None,
        }
    }
}

/// `[loss]`: the loss (with its coefficients) and what every loss shares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LossTable", into = "LossTable")]
pub struct DpoParams {
    pub kind: DpoLoss,
    /// β: the strength of the pull towards the reference (or the reward scale).
    pub beta: f64,
    /// Adds `rpo_alpha · NLL(yw)` to any loss (RPO); None: no SFT term.
    pub rpo_alpha: Option<f64>,
}

impl Default for DpoParams {
    fn default() -> Self {
        DpoParams {
            kind: DpoLoss::Sigmoid {
                label_smoothing: 0.0,
            },
            beta: BETA,
            rpo_alpha: None,
        }
    }
}

impl DpoParams {
    // `!(x > 0.0)` on purpose: NaN must fail the check too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.beta > 0.0) {
            return Err("loss.beta must be positive".into());
        }
        if let Some(eps) = self.kind.label_smoothing() {
            if !(0.0..0.5).contains(&eps) {
                return Err("loss.label_smoothing must lie in [0, 0.5)".into());
            }
        }
        if let DpoLoss::Discopop { tau } = self.kind {
            if !(tau > 0.0) {
                return Err("loss.discopop_tau must be positive".into());
            }
        }
        Ok(())
    }
}

/// `[loss]` as written: TRL's flat keys, each optional.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LossTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    beta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label_smoothing: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    simpo_gamma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpo_alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    orpo_lambda: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discopop_tau: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpo_alpha: Option<f64>,
}

impl TryFrom<LossTable> for DpoParams {
    type Error = String;

    fn try_from(t: LossTable) -> std::result::Result<Self, String> {
        let name = t.kind.as_deref().unwrap_or("sigmoid");
        // Each loss takes its own keys; any other one left over is an error.
        let mut smoothing = t.label_smoothing;
        let (mut gamma, mut alpha) = (t.simpo_gamma, t.cpo_alpha);
        let (mut lambda, mut tau) = (t.orpo_lambda, t.discopop_tau);
        let take = |v: &mut Option<f64>, default: f64| v.take().unwrap_or(default);
        let kind = match name {
            "sigmoid" => DpoLoss::Sigmoid {
                label_smoothing: take(&mut smoothing, 0.0),
            },
            "robust" => DpoLoss::Robust {
                label_smoothing: take(&mut smoothing, 0.0),
            },
            "hinge" => DpoLoss::Hinge,
            "ipo" => DpoLoss::Ipo,
            "sigmoid_norm" => DpoLoss::SigmoidNorm,
            "bco_pair" => DpoLoss::BcoPair,
            "nca_pair" => DpoLoss::NcaPair,
            "apo_zero" => DpoLoss::ApoZero,
            "apo_down" => DpoLoss::ApoDown,
            "sppo_hard" => DpoLoss::SppoHard,
            "discopop" => DpoLoss::Discopop {
                tau: take(&mut tau, DISCOPOP_TAU),
            },
            "simpo" => DpoLoss::Simpo {
                gamma: take(&mut gamma, SIMPO_GAMMA),
                label_smoothing: take(&mut smoothing, 0.0),
            },
            "cpo" => DpoLoss::Cpo {
                alpha: take(&mut alpha, CPO_ALPHA),
                label_smoothing: take(&mut smoothing, 0.0),
            },
            "orpo" => DpoLoss::Orpo {
                lambda: take(&mut lambda, ORPO_LAMBDA),
            },
            _ => {
                return Err(format!(
                    "loss.kind: unknown loss {name:?}; expected one of {}",
                    DPO_LOSS_NAMES.join(", ")
                ))
            }
        };
        let left = [
            ("label_smoothing", smoothing),
            ("simpo_gamma", gamma),
            ("cpo_alpha", alpha),
            ("orpo_lambda", lambda),
            ("discopop_tau", tau),
        ];
        if let Some((key, _)) = left.iter().find(|(_, v)| v.is_some()) {
            return Err(format!("loss.{key} does not apply to loss kind \"{name}\""));
        }
        Ok(DpoParams {
            kind,
            beta: t.beta.unwrap_or(BETA),
            rpo_alpha: t.rpo_alpha,
        })
    }
}

impl From<DpoParams> for LossTable {
    fn from(p: DpoParams) -> Self {
        let mut t = LossTable {
            kind: Some(p.kind.name().to_owned()),
            beta: Some(p.beta),
            label_smoothing: p.kind.label_smoothing(),
            rpo_alpha: p.rpo_alpha,
            ..LossTable::default()
        };
        match p.kind {
            DpoLoss::Simpo { gamma, .. } => t.simpo_gamma = Some(gamma),
            DpoLoss::Cpo { alpha, .. } => t.cpo_alpha = Some(alpha),
            DpoLoss::Orpo { lambda } => t.orpo_lambda = Some(lambda),
            DpoLoss::Discopop { tau } => t.discopop_tau = Some(tau),
            DpoLoss::Sigmoid { .. }
            | DpoLoss::Robust { .. }
            | DpoLoss::Hinge
            | DpoLoss::Ipo
            | DpoLoss::SigmoidNorm
            | DpoLoss::BcoPair
            | DpoLoss::NcaPair
            | DpoLoss::ApoZero
            | DpoLoss::ApoDown
            | DpoLoss::SppoHard => {}
        }
        t
    }
}
