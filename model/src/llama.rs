//! A Llama-family decoder (Llama, Qwen2) in tch. Parameter paths equal HF's tensor names,
//! so checkpoints load without a rename table.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::config::LlamaConfig;
use crate::kv_cache::KvCache;
use crate::lora::LoraAdapter;
use crate::rope::Rope;

/// y = x Wᵀ + b, with HF's `weight` (out, in) layout, plus a LoRA term when one is attached.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Attached by [`crate::lora::Lora::attach`]; None for plain layers.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn new(p: nn::Path, in_dim: usize, out_dim: usize, bias: bool) -> Self {
        let weight = p.var(
            "weight",
            &[out_dim as i64, in_dim as i64],
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        );
        let bias = bias.then(|| p.var("bias", &[out_dim as i64], Init::Const(0.0)));
        Linear {
            weight,
            bias,
            lora: None,
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let ys = xs.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(lora) if lora.is_enabled() => ys + lora.forward(xs),
            _ => ys,
        }
    }
}

/// Root-mean-square norm computed in f32, as HF's LlamaRMSNorm does.
#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, dim: usize, eps: f64) -> Self {
        RmsNorm {
            weight: p.var("weight", &[dim as i64], Init::Const(1.0)),
            eps,
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let kind = xs.kind();
        let xs32 = xs.to_kind(Kind::Float);
        let variance = xs32.square().mean_dim(-1, true, Kind::Float);
        let normed = xs32 * (variance + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

#[derive(Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    pub fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_kv_heads());
        let bias = cfg.attention_bias;
        Attention {
            q_proj: Linear::new(&p / "q_proj", h, nh * d, bias),
            k_proj: Linear::new(&p / "k_proj", h, nkv * d, bias),
            v_proj: Linear::new(&p / "v_proj", h, nkv * d, bias),
            o_proj: Linear::new(&p / "o_proj", nh * d, h, false),
            n_heads: nh as i64,
            n_kv_heads: nkv as i64,
            head_dim: d as i64,
        }
    }

    /// `mask`: boolean (b, 1, t, keys), true where a query may attend; None means causal.
    ///
    /// Invariant: `xs` is (b, t, c), the hidden states [`Llama::forward`] makes from (b, t)
    /// ids. Shapes here come from the model's own code, never from user data: a mismatch
    /// is a bug in the caller, and it panics.
    pub fn forward(
        &self,
        xs: &Tensor,
        rope: &Rope,
        positions: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor {
        let size = xs.size();
        let (b, t) = (size[0], size[1]);
        let q = self
            .q_proj
            .forward(xs)
            .view([b, t, self.n_heads, self.head_dim])
            .transpose(1, 2); // (b, nh, t, d)
        let k = self
            .k_proj
            .forward(xs)
            .view([b, t, self.n_kv_heads, self.head_dim])
            .transpose(1, 2); // (b, nkv, t, d)
        let v = self
            .v_proj
            .forward(xs)
            .view([b, t, self.n_kv_heads, self.head_dim])
            .transpose(1, 2);
        let (q, k) = rope.apply(&q, &k, positions);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.update(layer, &k, &v),
            None => (k, v),
        };
        let keys = k.size()[2];
        // Without an explicit mask a query block longer than one token is causal; when it
        // follows cached positions the causal diagonal is offset by their number.
        let offset_mask;
        let (mask, is_causal) = match mask {
            Some(m) => (Some(m), false),
            None if t > 1 && keys > t => {
                offset_mask = causal_mask(t, keys, xs.device());
                (Some(&offset_mask), false)
            }
            None => (None, t > 1),
        };
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask,
            0.0,
            is_causal,
            None,
            self.n_kv_heads != self.n_heads,
        ); // (b, nh, t, d)
        let y = y
            .transpose(1, 2)
            .reshape([b, t, self.n_heads * self.head_dim]);
        self.o_proj.forward(&y)
    }
}

/// (b, 1, t, t) mask for a left- or right-padded batch: causal, keys limited to real
/// tokens, and the diagonal always allowed so a padding query never has an empty row
/// (which would give NaN).
///
/// Invariant: `key_valid` is the (b, t) boolean mask of a batch the crate's collators
/// built (one row per sequence), so its two dimensions are read without a check.
pub fn padded_causal_mask(key_valid: &Tensor) -> Tensor {
    let size = key_valid.size();
    let (b, t) = (size[0], size[1]);
    let device = key_valid.device();
    let causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
    let eye = Tensor::eye(t, (Kind::Bool, device));
    causal
        .view([1, 1, t, t])
        .logical_and(&key_valid.view([b, 1, 1, t]))
        .logical_or(&eye.view([1, 1, t, t]))
}

/// The explicit mask a batch with `key_valid` (b, t) needs, or None where the causal mask
/// alone gives the same result for every real token: no padding, or right padding only (no
/// real token can see a pad after it, and what pads see is never read). Without an
/// explicit mask SDPA takes its fused kernel, forward and backward.
pub fn padding_mask(key_valid: &Tensor) -> Option<Tensor> {
    let t = key_valid.size()[1];
    // A real token right after a pad is what right padding never has.
    let pad_then_real = t > 1
        && key_valid
            .narrow(1, 1, t - 1)
            .logical_and(&key_valid.narrow(1, 0, t - 1).logical_not())
            .any()
            .int64_value(&[])
            != 0;
    pad_then_real.then(|| padded_causal_mask(key_valid))
}

/// Position ids (b, t) for a padded batch: 0 at each row's first real token.
pub fn padded_positions(key_valid: &Tensor) -> Tensor {
    (key_valid.cumsum(1, Kind::Int64) - 1).clamp_min(0)
}

/// (1, 1, t, keys) boolean mask for `t` queries that follow `keys - t` earlier positions.
pub fn causal_mask(t: i64, keys: i64, device: tch::Device) -> Tensor {
    Tensor::ones([t, keys], (Kind::Bool, device))
        .tril(keys - t)
        .view([1, 1, t, keys])
}

#[derive(Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Mlp {
            gate_proj: Linear::new(&p / "gate_proj", h, i, false),
            up_proj: Linear::new(&p / "up_proj", h, i, false),
            down_proj: Linear::new(&p / "down_proj", i, h, false),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let gate = self.gate_proj.forward(xs).silu();
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)))
    }
}

#[derive(Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    pub fn new(p: nn::Path, cfg: &LlamaConfig) -> Self {
        DecoderLayer {
            self_attn: Attention::new(&p / "self_attn", cfg),
            mlp: Mlp::new(&p / "mlp", cfg),
            input_layernorm: RmsNorm::new(
                &p / "input_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
            ),
            post_attention_layernorm: RmsNorm::new(
                &p / "post_attention_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
            ),
        }
    }
}

/// The decoder with its LM head.
#[derive(Debug)]
pub struct Llama {
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// None when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    pub rope: Rope,
    pub config: LlamaConfig,
}

impl Llama {
    /// Declares every parameter under `root` (a VarStore root) with HF's names.
    pub fn new(root: &nn::Path, cfg: &LlamaConfig) -> Self {
        Self::build(root, cfg, true)
    }

    /// The decoder without an LM head (for scalar heads: reward models, critics). With
    /// tied embeddings `logits` still works; with untied ones it must not be called.
    pub fn new_backbone(root: &nn::Path, cfg: &LlamaConfig) -> Self {
        Self::build(root, cfg, false)
    }

    fn build(root: &nn::Path, cfg: &LlamaConfig, with_head: bool) -> Self {
        let model = root / "model";
        let embed_tokens = (&model / "embed_tokens").var(
            "weight",
            &[cfg.vocab_size as i64, cfg.hidden_size as i64],
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(&model / "layers" / i, cfg))
            .collect();
        let norm = RmsNorm::new(&model / "norm", cfg.hidden_size, cfg.rms_norm_eps);
        let lm_head = (with_head && !cfg.tie_word_embeddings)
            .then(|| Linear::new(root / "lm_head", cfg.hidden_size, cfg.vocab_size, false));
        Llama {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope: Rope::new(cfg, root.device()),
            config: cfg.clone(),
        }
    }

    /// Final hidden states (b, t, c) for `input_ids` (b, t) at `positions` (b, t).
    /// With a cache, the new keys/values are appended and attention sees all of them.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor {
        let mut xs = Tensor::embedding(&self.embed_tokens, input_ids, -1, false, false);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            let attn = layer.self_attn.forward(
                &layer.input_layernorm.forward(&xs),
                &self.rope,
                positions,
                mask,
                layer_cache,
            );
            xs = xs + attn;
            xs = &xs
                + layer
                    .mlp
                    .forward(&layer.post_attention_layernorm.forward(&xs));
        }
        if let Some(cache) = cache {
            cache.advance(input_ids.size()[1]);
        }
        self.norm.forward(&xs)
    }

    /// Vocabulary logits in f32 for hidden states (..., c).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => hidden.linear::<Tensor>(&self.embed_tokens, None),
        };
        logits.to_kind(Kind::Float)
    }
}
