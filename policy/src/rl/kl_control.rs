//! The KL coefficient β of PPO's per-token penalty: fixed, or adapted towards a target KL
//! with the proportional controller of Ziegler et al. (2019), as TRL's
//! `AdaptiveKLController` and OpenRLHF's:
//!
//! `e = clip(KL / target − 1, −0.2, 0.2)`, `β ← β · (1 + e · n / horizon)`,
//!
//! where KL is the batch mean of the per-sequence summed KL (TRL's `objective/kl`) and `n`
//! the number of sequences in the batch. Defaults: TRL `PPOConfig` uses a fixed
//! `kl_coef = 0.05`; TRL's older adaptive controller started at 0.2 with target 6 and
//! horizon 10000; OpenRLHF starts at 0.01 with horizon 10000 (adaptive when `kl_target`
//! is set).

use serde::{Deserialize, Serialize};

/// `[ppo.kl]` in ppo.toml.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum KlControlConfig {
    /// β stays `coef` (TRL's default, 0.05).
    Fixed {
        #[serde(default = "default_coef")]
        coef: f64,
    },
    /// β starts at `coef` and follows the controller towards `target` (nats per sequence).
    Adaptive {
        #[serde(default = "default_coef")]
        coef: f64,
        target: f64,
        #[serde(default = "default_horizon")]
        horizon: f64,
    },
}

fn default_coef() -> f64 {
    0.05
}
fn default_horizon() -> f64 {
    10_000.0
}

impl Default for KlControlConfig {
    fn default() -> Self {
        KlControlConfig::Fixed {
            coef: default_coef(),
        }
    }
}

impl KlControlConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        match *self {
            KlControlConfig::Fixed { coef } if coef.is_nan() || coef < 0.0 => {
                Err("ppo.kl.coef must be at least 0".into())
            }
            KlControlConfig::Adaptive {
                coef,
                target,
                horizon,
            } if !(coef > 0.0 && target > 0.0 && horizon > 0.0) => {
                Err("ppo.kl: coef, target and horizon must be positive".into())
            }
            _ => Ok(()),
        }
    }
}

/// The current β and how it moves; saved in checkpoints so a resumed run continues it.
/// JSON holds β twice: readable, and as its IEEE bits (what is read back, so a resumed
/// run continues with exactly the same β).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "SavedKlController", into = "SavedKlController")]
pub struct KlController {
    pub config: KlControlConfig,
    /// β now.
    pub value: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedKlController {
    config: KlControlConfig,
    value: f64,
    value_bits: u64,
}

impl From<KlController> for SavedKlController {
    fn from(c: KlController) -> Self {
        SavedKlController {
            config: c.config,
            value: c.value,
            value_bits: c.value.to_bits(),
        }
    }
}

impl From<SavedKlController> for KlController {
    fn from(s: SavedKlController) -> Self {
        KlController {
            config: s.config,
            value: f64::from_bits(s.value_bits),
        }
    }
}

impl KlController {
    pub fn new(config: KlControlConfig) -> Self {
        let value = match config {
            KlControlConfig::Fixed { coef } | KlControlConfig::Adaptive { coef, .. } => coef,
        };
        KlController { config, value }
    }

    /// One update after a batch of `n_sequences` whose mean summed KL was `kl`.
    pub fn update(&mut self, kl: f64, n_sequences: usize) {
        if let KlControlConfig::Adaptive {
            target, horizon, ..
        } = self.config
        {
            if kl.is_finite() {
                let error = (kl / target - 1.0).clamp(-0.2, 0.2);
                self.value *= 1.0 + error * n_sequences as f64 / horizon;
            }
        }
    }
}
