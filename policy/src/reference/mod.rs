//! The frozen reference a policy is compared against. [`ReferenceModel`] is the live model
//! every trainer runs (DPO, KTO, and the KL term of GRPO, RLOO, PPO): a separate
//! checkpoint, the policy's own base with its LoRA adapters switched off, or — once,
//! before the first update — the policy itself. [`ReferenceLogps`] is where DPO and KTO
//! take reference log-probs from: every row of a data set needs two (DPO: chosen and
//! rejected; KTO: the completion and its KL pair); with the cache on they are computed once
//! per data set and reused across epochs and runs ([`cache`]), otherwise by a live model.

pub mod cache;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use tiller_model::dist::Collective;
use tiller_model::llama::Llama;
use tiller_model::{CausalLm, DType};

use crate::error::{PolicyError, Result};
use crate::trainee::Trainee;

/// `[reference]` of the offline trainers (DPO, KTO): the model the policy is compared
/// against, and the cache of its log-probs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedReferenceConfig {
    /// A separate checkpoint; absent: the starting model (with LoRA, the same weights with
    /// the adapters switched off, so no second copy is loaded).
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Cache the reference log-probs of every row (computed once, reused across epochs
    /// and runs). The reference is frozen, so this is on by default.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Where cache files live; absent: `<out>/ref_cache`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Default for CachedReferenceConfig {
    fn default() -> Self {
        CachedReferenceConfig {
            model: None,
            cache: true,
            cache_dir: None,
        }
    }
}

/// `[reference]` of the online RL trainers (GRPO, RLOO, PPO): the frozen policy the KL
/// term compares against (no cache: every rollout is new).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceModelConfig {
    /// A separate checkpoint; absent: the starting model (with LoRA, the same weights with
    /// the adapters switched off, so no second copy is loaded).
    #[serde(default)]
    pub model: Option<PathBuf>,
}

/// Three token lists per row that determine its reference log-probs (the cache key).
pub(crate) type KeyRow<'a> = [&'a [i64]; 3];

/// What a trainer's config says about its reference.
pub(crate) struct ReferenceSetup<'a> {
    pub config: &'a CachedReferenceConfig,
    /// The starting model: the default reference and the tokenizer.
    pub model: &'a Path,
    pub out: &'a Path,
    pub dtype: DType,
    /// The algorithm, part of the cache key ("dpo", "kto").
    pub what: &'static str,
    /// The ranks that compute a missing cache together (each its share of the rows).
    pub collective: &'a dyn Collective,
}

/// A live frozen reference model.
pub enum ReferenceModel {
    /// A separate frozen model.
    Model(Box<CausalLm>),
    /// The policy's own base with its LoRA adapters switched off.
    Adapters,
    /// The policy itself, only before its first update (fills the cache of a full
    /// fine-tuning run without a second copy of the weights).
    Policy,
}

impl ReferenceModel {
    /// The checkpoint `dir` as a frozen reference; without one, the starting model
    /// `starting` (with LoRA, the trainee's own base with its adapters off).
    pub(crate) fn load(
        dir: Option<&Path>,
        starting: &Path,
        trainee: &Trainee,
        kind: Kind,
    ) -> Result<Self> {
        let separate = |dir: &Path| -> Result<ReferenceModel> {
            let mut lm = CausalLm::load(dir, trainee.lm.device(), kind)?;
            lm.vs.freeze();
            Ok(ReferenceModel::Model(Box::new(lm)))
        };
        match (dir, &trainee.lora) {
            (Some(dir), _) => separate(dir),
            (None, Some(_)) => Ok(ReferenceModel::Adapters),
            (None, None) => separate(starting),
        }
    }

    /// Runs `forward` on the reference model without gradients.
    pub(crate) fn run<T>(
        &self,
        trainee: &Trainee,
        forward: impl FnOnce(&Llama) -> Result<T>,
    ) -> Result<T> {
        let model = match self {
            ReferenceModel::Model(lm) => &lm.model,
            ReferenceModel::Policy | ReferenceModel::Adapters => &trainee.lm.model,
        };
        let _adapters_off = match self {
            ReferenceModel::Adapters => Some(
                trainee
                    .lora
                    .as_ref()
                    .ok_or_else(|| PolicyError::Invalid("no adapters to disable".into()))?
                    .disabled(),
            ),
            ReferenceModel::Model(_) | ReferenceModel::Policy => None,
        };
        tch::no_grad(|| forward(model))
    }
}

/// Where DPO's and KTO's reference log-probs come from.
pub(crate) enum ReferenceLogps {
    /// Reference-free loss.
    None,
    /// Per row, precomputed (train set, eval set).
    Cached {
        train: Vec<[f64; 2]>,
        eval: Option<Vec<[f64; 2]>>,
    },
    /// Computed per batch by a live model.
    Live(ReferenceModel),
}

impl ReferenceLogps {
    /// Runs `forward` on the live reference model without gradients; None when the
    /// reference is cached or absent.
    pub fn run<T>(
        &self,
        trainee: &Trainee,
        forward: impl FnOnce(&Llama) -> Result<T>,
    ) -> Result<Option<T>> {
        match self {
            ReferenceLogps::None | ReferenceLogps::Cached { .. } => Ok(None),
            ReferenceLogps::Live(model) => model.run(trainee, forward).map(Some),
        }
    }

    /// The cached log-probs (two columns) of rows `indices` of the train or eval set;
    /// None when the reference is not cached.
    pub fn cached(
        &self,
        eval: bool,
        indices: &[usize],
        kind: Kind,
        device: Device,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let ReferenceLogps::Cached {
            train,
            eval: eval_set,
        } = self
        else {
            return Ok(None);
        };
        let table = if eval { eval_set.as_ref() } else { Some(train) };
        let table = table
            .ok_or_else(|| PolicyError::Invalid("no cached reference for the eval set".into()))?;
        let col = |j: usize| -> Result<Tensor> {
            let v = indices
                .iter()
                .map(|&i| {
                    table.get(i).map(|row| row[j]).ok_or_else(|| {
                        PolicyError::Invalid(format!("no cached reference for row {i}"))
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            Ok(Tensor::from_slice(&v).to_kind(kind).to_device(device))
        };
        Ok(Some((col(0)?, col(1)?)))
    }
}

/// The cache directory and the key of a set's reference log-probs.
fn cache_slot(setup: &ReferenceSetup, rows: &[KeyRow]) -> Result<(PathBuf, String)> {
    let dir = setup
        .config
        .cache_dir
        .clone()
        .unwrap_or_else(|| setup.out.join("ref_cache"));
    let ref_dir = setup.config.model.as_deref().unwrap_or(setup.model);
    let dtype = match setup.dtype {
        DType::F32 => "f32",
        DType::Bf16 => "bf16",
    };
    // A PEFT adapter as the reference: its base weights are part of it too.
    let mut dirs = vec![ref_dir.to_path_buf()];
    if ref_dir.join("adapter_config.json").is_file() {
        dirs.extend(tiller_model::lora::PeftConfig::read(ref_dir)?.base_dir(ref_dir));
    }
    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let key = cache::rows_key(setup.what, &dirs, setup.model, dtype, rows)?;
    Ok((dir, key))
}

/// The two reference log-probs of rows `0..n`, computed `batch_size` rows at a time by
/// `compute` (which returns two (rows,) tensors). In a world of several, rank r computes
/// chunks r, r + world, ... and a sum of the ranks' tables (zeros where a rank did not
/// compute, and x + 0 is exact) gathers the whole table on every rank.
pub(crate) fn compute_rows(
    n: usize,
    batch_size: usize,
    collective: &dyn Collective,
    mut compute: impl FnMut(&[usize]) -> Result<(Tensor, Tensor)>,
) -> Result<Vec<[f64; 2]>> {
    let (rank, world) = (collective.rank(), collective.world_size());
    let mut flat = vec![0.0f64; 2 * n];
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(batch_size.max(1)).skip(rank).step_by(world) {
        let (a, b) = compute(chunk)?;
        let a = Vec::<f64>::try_from(&a.to_kind(Kind::Double))?;
        let b = Vec::<f64>::try_from(&b.to_kind(Kind::Double))?;
        if a.len() != chunk.len() || b.len() != chunk.len() {
            return Err(PolicyError::Invalid(format!(
                "reference log-probs: {} and {} values for {} rows",
                a.len(),
                b.len(),
                chunk.len()
            )));
        }
        for ((&i, a), b) in chunk.iter().zip(a).zip(b) {
            flat[2 * i] = a;
            flat[2 * i + 1] = b;
        }
    }
    if world > 1 {
        collective.all_reduce_sum_f64(&mut flat)?;
    }
    Ok(flat.chunks(2).map(|r| [r[0], r[1]]).collect())
}

/// Computes the reference log-probs of set `k` (0: train, 1: eval) with a live reference.
pub(crate) type FillSet<'a> = dyn FnMut(&ReferenceLogps, usize) -> Result<Vec<[f64; 2]>> + 'a;

/// The reference to train against. `sets` are the key rows of the train set and, when
/// there is one, the eval set; `fill(live, k)` computes set `k`'s reference log-probs
/// with a live reference. With the cache on, a reference model is only loaded (or the
/// adapters switched off) when some set misses the cache.
pub(crate) fn build(
    setup: &ReferenceSetup,
    trainee: &Trainee,
    resumed: bool,
    sets: &[Vec<KeyRow>],
    fill: &mut FillSet,
) -> Result<ReferenceLogps> {
    let config = setup.config;
    let live = || -> Result<ReferenceLogps> {
        let model = match (&config.model, &trainee.lora) {
            // Full fine-tuning against the starting weights: before the first step the
            // policy *is* the reference, so filling the cache needs no second copy.
            (None, None) if config.cache && !resumed => ReferenceModel::Policy,
            (dir, _) => {
                ReferenceModel::load(dir.as_deref(), setup.model, trainee, setup.dtype.kind())?
            }
        };
        Ok(ReferenceLogps::Live(model))
    };
    if !config.cache {
        return live();
    }
    let mut model = None;
    let mut tables = Vec::new();
    for (k, rows) in sets.iter().enumerate() {
        let (dir, key) = cache_slot(setup, rows)?;
        if let Some(table) = cache::load(&dir, &key, rows.len())? {
            tracing::info!(
                "reference log-probs of {} rows from the cache ({key:.12})",
                rows.len()
            );
            tables.push(table);
            continue;
        }
        if model.is_none() {
            model = Some(live()?);
        }
        let live = model
            .as_ref()
            .ok_or_else(|| PolicyError::Invalid("no reference".into()))?;
        let started = Instant::now();
        trainee.set_training(false);
        let table = fill(live, k)?;
        // Every rank holds the gathered table; one file, written by the main rank.
        if setup.collective.is_main() {
            cache::store(&dir, &key, &table)?;
        }
        setup.collective.barrier()?;
        tracing::info!(
            "cached reference log-probs of {} rows in {:.1}s ({key:.12})",
            rows.len(),
            started.elapsed().as_secs_f64()
        );
        tables.push(table);
    }
    let eval = if tables.len() > 1 { tables.pop() } else { None };
    let train = tables
        .pop()
        .ok_or_else(|| PolicyError::Invalid("no reference log-probs".into()))?;
    Ok(ReferenceLogps::Cached { train, eval })
}
