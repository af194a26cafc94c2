//! HF-format checkpoints: config.json + model.safetensors (or shards with an index) +
//! tokenizer files. Loading is strict: a missing, extra or misshapen tensor is an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::atomic;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::llama::Llama;

/// Files that travel with a checkpoint besides the weights.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// A causal language model with the VarStore that owns its parameters.
pub struct CausalLm {
    pub vs: VarStore,
    pub model: Llama,
    pub config: LlamaConfig,
}

impl CausalLm {
    /// A model with random weights (N(0, 0.02), norms at 1), for tests and benchmarks.
    pub fn random(config: &LlamaConfig, device: Device, kind: Kind, seed: i64) -> Self {
        let (mut vs, model) = with_torch_seed(seed, || {
            let vs = VarStore::new(device);
            let model = Llama::new(&vs.root(), config);
            (vs, model)
        });
        vs.set_kind(kind);
        CausalLm {
            vs,
            model,
            config: config.clone(),
        }
    }

    /// Loads an HF directory (config.json + safetensors) onto `device` as `kind`. A PEFT
    /// adapter directory (adapter_config.json, no config.json) loads its base model from
    /// `base_model_name_or_path` with the adapter merged in.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        if !dir.join("config.json").exists() && dir.join(crate::lora::ADAPTER_CONFIG).exists() {
            return Self::load_adapter_dir(dir, device, kind);
        }
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let mut lm = Self::random(&config, device, Kind::Float, 0);
        let tied = config.tie_word_embeddings;
        load_var_store(&lm.vs, dir, &|name| {
            ignorable(name) || (tied && name == "lm_head.weight")
        })?;
        lm.vs.set_kind(kind);
        Ok(lm)
    }

    fn load_adapter_dir(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let peft = crate::lora::PeftConfig::read(dir)?;
        let base = peft.base_dir(dir).ok_or_else(|| ModelError::Config {
            path: dir.join(crate::lora::ADAPTER_CONFIG),
            message: "base_model_name_or_path is missing: cannot find the base model".into(),
        })?;
        let mut lm = Self::load(&base, device, Kind::Float)?;
        crate::lora::Lora::load(&mut lm, dir)?.merge(&mut lm)?;
        lm.vs.unfreeze();
        lm.vs.set_kind(kind);
        Ok(lm)
    }

    /// Writes an HF-format directory: config.json, model.safetensors, and the tokenizer
    /// files found in `tokenizer_dir`. Each file goes through [`atomic::write_file`]
    /// (temporary name, fsync, rename), so an interrupted save never leaves a half-written
    /// file in place.
    pub fn save(&self, dir: &Path, tokenizer_dir: Option<&Path>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut config = self.config.clone();
        config.torch_dtype = Some(dtype_name(self.vs.kind())?.to_owned());
        save_safetensors(&self.vs.variables(), &dir.join("model.safetensors"))?;
        config.write(&dir.join("config.json"))?;
        if let Some(src) = tokenizer_dir {
            copy_tokenizer_files(src, dir)?;
        }
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn kind(&self) -> Kind {
        self.vs.kind()
    }
}

/// Tensors some exporters write that carry no information (RoPE tables are recomputed).
pub fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// Copies every tensor of the checkpoint in `dir` into the same-named variable of `vs`.
/// Strict: a variable the files lack, a tensor no variable takes (unless `skip` says so),
/// or a shape mismatch is an error naming the tensor.
pub fn load_var_store(vs: &VarStore, dir: &Path, skip: &dyn Fn(&str) -> bool) -> Result<()> {
    let variables = vs.variables();
    let mut loaded = BTreeSet::new();
    for file in safetensor_files(dir)? {
        let handle = std::fs::File::open(&file).map_err(|e| ModelError::io(&file, e))?;
        // SAFETY: the file is only read, and only while this function runs.
        let bytes = unsafe { memmap2::Mmap::map(&handle) }.map_err(|e| ModelError::io(&file, e))?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Tensor {
            file: file.clone(),
            name: String::new(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let mut unexpected = Vec::new();
        for (name, view) in tensors.tensors() {
            let Some(var) = variables.get(&name) else {
                if !skip(&name) {
                    unexpected.push(name);
                }
                continue;
            };
            let src = tensor_from_view(&file, &name, &view)?;
            if src.size() != var.size() {
                return Err(ModelError::TensorShape {
                    file: file.clone(),
                    name,
                    expected: var.size(),
                    found: src.size(),
                });
            }
            tch::no_grad(|| var.shallow_clone().f_copy_(&src))?;
            loaded.insert(name);
        }
        if !unexpected.is_empty() {
            unexpected.sort();
            return Err(ModelError::UnexpectedTensors {
                file,
                names: unexpected,
            });
        }
    }
    let mut missing: Vec<String> = variables
        .keys()
        .filter(|n| !loaded.contains(*n))
        .cloned()
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(ModelError::MissingTensors {
            dir: dir.to_owned(),
            names: missing,
        });
    }
    Ok(())
}

/// Runs `init` with torch's global generator seeded by `seed`, holding a lock so that
/// concurrent initializations (test threads) cannot interleave their random draws.
pub fn with_torch_seed<T>(seed: i64, init: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tch::manual_seed(seed);
    init()
}

/// Copies the tokenizer files present in `src` to `dst` (skipping when they are the same
/// dir), each atomically like every other checkpoint file.
pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<()> {
    if src.canonicalize().ok() == dst.canonicalize().ok() {
        return Ok(());
    }
    for name in TOKENIZER_FILES {
        let from = src.join(name);
        if from.exists() {
            atomic::write_file(&dst.join(name), |tmp| {
                std::fs::copy(&from, tmp)
                    .map(|_| ())
                    .map_err(|e| ModelError::io(&from, e))
            })?;
        }
    }
    Ok(())
}

/// config.json's `torch_dtype` for the kinds a checkpoint is saved in.
fn dtype_name(kind: Kind) -> Result<&'static str> {
    match kind {
        Kind::Float => Ok("float32"),
        Kind::BFloat16 => Ok("bfloat16"),
        Kind::Half => Ok("float16"),
        other => Err(ModelError::InvalidArgument(format!(
            "cannot save a model of kind {other:?} (float32, bfloat16, float16)"
        ))),
    }
}

/// model.safetensors, or every shard listed in model.safetensors.index.json.
fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        return Err(ModelError::Config {
            path: dir.to_owned(),
            message: "no model.safetensors or model.safetensors.index.json".into(),
        });
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: index_path.clone(),
        source,
    })?;
    let shards: BTreeSet<&String> = index.weight_map.values().collect();
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

fn tensor_from_view(
    file: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView,
) -> Result<Tensor> {
    let kind = match view.dtype() {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        other => {
            return Err(ModelError::Tensor {
                file: file.to_owned(),
                name: name.to_owned(),
                message: format!("dtype {other:?} is not supported (F32, F16, BF16)"),
            })
        }
    };
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(view.data(), &shape, kind)?)
}

fn safetensors_dtype(kind: Kind) -> Result<Dtype> {
    match kind {
        Kind::Float => Ok(Dtype::F32),
        Kind::Half => Ok(Dtype::F16),
        Kind::BFloat16 => Ok(Dtype::BF16),
        other => Err(ModelError::InvalidArgument(format!(
            "cannot save tensors of kind {other:?}"
        ))),
    }
}

/// Reads every tensor of one safetensors file (on the CPU).
pub fn load_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Tensor {
        file: path.to_owned(),
        name: String::new(),
        message: format!("not a valid safetensors file: {e}"),
    })?;
    let mut out = HashMap::new();
    for (name, view) in tensors.tensors() {
        let tensor = tensor_from_view(path, &name, &view)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Writes named tensors to `path` (atomically: [`atomic::write_file`]) with HF's
/// `{"format": "pt"}` metadata so transformers accepts the file.
pub fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut buffers = BTreeMap::new();
    for (name, tensor) in tensors {
        let t = tensor.to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.insert(name.clone(), (safetensors_dtype(t.kind())?, shape, bytes));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, (dtype, shape, bytes)) in &buffers {
        let view =
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| {
                ModelError::Tensor {
                    file: path.to_owned(),
                    name: name.clone(),
                    message: e.to_string(),
                }
            })?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    atomic::write_file(path, |tmp| {
        safetensors::serialize_to_file(views, Some(metadata), tmp).map_err(|e| ModelError::Tensor {
            file: path.to_owned(),
            name: String::new(),
            message: e.to_string(),
        })
    })
}
