//! GGUF import: dequantization against hand-built blocks, a whole tiny model written as
//! GGUF (with llama.cpp's q/k permutation) and imported back, and corrupt-file errors.

use std::path::Path;

use half::{bf16, f16};
use tch::{Device, Kind, Tensor};
use tiller_data::Tokenizer;
use tiller_model::gguf::{dequantize, import_gguf, GgmlType, GgufFile};
use tiller_model::testing::{byte_to_char, tiny_config, CHAT_TEMPLATE, IM_END, IM_START, PAD};
use tiller_model::CausalLm;

fn h(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

#[test]
fn dequantizes_f32_f16_bf16() {
    let mut bytes = Vec::new();
    for x in [1.5f32, -2.25, 0.0] {
        bytes.extend(x.to_le_bytes());
    }
    assert_eq!(dequantize(GgmlType::F32, &bytes), [1.5, -2.25, 0.0]);
    let bytes: Vec<u8> = [1.5f32, -2.25].iter().flat_map(|&x| h(x)).collect();
    assert_eq!(dequantize(GgmlType::F16, &bytes), [1.5, -2.25]);
    let bytes: Vec<u8> = [1.5f32, -2.25]
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect();
    assert_eq!(dequantize(GgmlType::BF16, &bytes), [1.5, -2.25]);
}

#[test]
fn dequantizes_q8_0() {
    let mut block = h(0.5).to_vec();
    let qs: Vec<i8> = (0..32).map(|i| (i * 8 - 128) as i8).collect();
    block.extend(qs.iter().map(|&q| q as u8));
    let out = dequantize(GgmlType::Q8_0, &block);
    assert_eq!(out.len(), 32);
    assert_eq!(out[0], -64.0);
    assert_eq!(out[1], -60.0);
    assert_eq!(out[31], 0.5 * 120.0);
}

#[test]
fn dequantizes_q4_0_and_q4_1() {
    // Byte j holds element j in its low nibble and element j + 16 in its high nibble.
    let qs: Vec<u8> = (0..16u8).map(|j| (15 - j) << 4 | j).collect();
    let mut q40 = h(2.0).to_vec();
    q40.extend(&qs);
    let out = dequantize(GgmlType::Q4_0, &q40);
    assert_eq!(out[0], (0 - 8) as f32 * 2.0);
    assert_eq!(out[5], (5 - 8) as f32 * 2.0);
    assert_eq!(out[16], (15 - 8) as f32 * 2.0);
    assert_eq!(out[31], (0 - 8) as f32 * 2.0);

    let mut q41 = h(0.25).to_vec();
    q41.extend(h(-1.0));
    q41.extend(&qs);
    let out = dequantize(GgmlType::Q4_1, &q41);
    assert_eq!(out[0], -1.0);
    assert_eq!(out[5], 0.25 * 5.0 - 1.0);
    assert_eq!(out[16], 0.25 * 15.0 - 1.0);
}

#[test]
fn dequantizes_q4_k() {
    // Sub-block j has scale j + 1 and min j (both < 16, so no high bits are needed).
    let mut block = h(1.0).to_vec();
    block.extend(h(0.5));
    let mut scales = [0u8; 12];
    for j in 0..4 {
        scales[j] = j as u8 + 1;
        scales[j + 4] = j as u8;
    }
    for j in 4..8 {
        scales[j + 4] = ((j as u8) << 4) | (j as u8 + 1);
    }
    block.extend(scales);
    block.extend([0x21u8; 128]); // low nibble 1 (even sub-blocks), high nibble 2 (odd)
    let out = dequantize(GgmlType::Q4K, &block);
    assert_eq!(out.len(), 256);
    for j in 0..8 {
        let q = if j % 2 == 0 { 1.0 } else { 2.0 };
        let expected = 1.0 * (j as f32 + 1.0) * q - 0.5 * j as f32;
        assert_eq!(out[j * 32], expected, "sub-block {j}");
        assert_eq!(out[j * 32 + 31], expected, "sub-block {j}");
    }
}

#[test]
fn dequantizes_q6_k() {
    let mut block = vec![0x53u8; 128]; // ql: low nibble 3, high nibble 5
    block.extend([0xE4u8; 64]); // qh: 2-bit fields 0, 1, 2, 3 from the low bits up
    block.extend((0..16).map(|i| (i as i8 - 8) as u8));
    block.extend(h(0.5));
    let out = dequantize(GgmlType::Q6K, &block);
    for e in [0usize, 40, 70, 100, 130, 200, 255] {
        let within = e % 128;
        let low = if within < 64 { 3 } else { 5 };
        let high = (within / 32) as i32;
        let q = (low | (high << 4)) - 32;
        assert_eq!(
            out[e],
            0.5 * ((e / 16) as i32 - 8) as f32 * q as f32,
            "element {e}"
        );
    }
}

/// A minimal GGUF v3 writer for tests.
#[derive(Default)]
struct Writer {
    kv: Vec<u8>,
    kv_count: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    tensor_count: u64,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Writer {
    fn key(&mut self, key: &str, type_id: u32) {
        put_str(&mut self.kv, key);
        self.kv.extend(type_id.to_le_bytes());
        self.kv_count += 1;
    }
    fn u32(&mut self, key: &str, v: u32) {
        self.key(key, 4);
        self.kv.extend(v.to_le_bytes());
    }
    fn f32(&mut self, key: &str, v: f32) {
        self.key(key, 6);
        self.kv.extend(v.to_le_bytes());
    }
    fn string(&mut self, key: &str, v: &str) {
        self.key(key, 8);
        put_str(&mut self.kv, v);
    }
    fn strings(&mut self, key: &str, items: &[String]) {
        self.key(key, 9);
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((items.len() as u64).to_le_bytes());
        for s in items {
            put_str(&mut self.kv, s);
        }
    }
    fn i32s(&mut self, key: &str, items: &[i32]) {
        self.key(key, 9);
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((items.len() as u64).to_le_bytes());
        for v in items {
            self.kv.extend(v.to_le_bytes());
        }
    }
    /// `dims` in GGML order (row length first).
    fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, bytes: &[u8]) {
        while self.data.len() % 32 != 0 {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(type_id.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.tensor_count += 1;
    }
    fn finish(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend(self.kv_count.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}

/// llama.cpp's `permute` for q/k rows, which the importer must undo.
fn permute(w: &Tensor, n_heads: i64) -> Tensor {
    let s = w.size();
    w.view([n_heads, 2, s[0] / n_heads / 2, s[1]])
        .transpose(1, 2)
        .reshape([s[0], s[1]])
}

fn f32_bytes(t: &Tensor) -> Vec<u8> {
    let v: Vec<f32> = Vec::try_from(t.contiguous().view(-1)).unwrap();
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the tiny random model as a llama GGUF; returns the model it came from.
fn write_tiny_gguf(path: &Path) -> CausalLm {
    let cfg = tiny_config();
    let lm = CausalLm::random(&cfg, Device::Cpu, Kind::Float, 11);
    let mut w = Writer::default();
    w.string("general.architecture", "llama");
    w.u32("llama.block_count", cfg.num_hidden_layers as u32);
    w.u32("llama.context_length", cfg.max_position_embeddings as u32);
    w.u32("llama.embedding_length", cfg.hidden_size as u32);
    w.u32("llama.feed_forward_length", cfg.intermediate_size as u32);
    w.u32("llama.attention.head_count", cfg.num_attention_heads as u32);
    w.u32("llama.attention.head_count_kv", cfg.num_kv_heads() as u32);
    w.f32("llama.rope.freq_base", cfg.rope_theta as f32);
    w.f32(
        "llama.attention.layer_norm_rms_epsilon",
        cfg.rms_norm_eps as f32,
    );
    w.string("tokenizer.ggml.model", "gpt2");
    let mut tokens: Vec<String> = byte_to_char().iter().map(|c| c.to_string()).collect();
    tokens.extend(["<|im_start|>", "<|im_end|>", "<pad>"].map(String::from));
    let mut types = vec![1i32; 256];
    types.extend([3, 3, 3]);
    w.strings("tokenizer.ggml.tokens", &tokens);
    w.i32s("tokenizer.ggml.token_type", &types);
    w.strings("tokenizer.ggml.merges", &[]);
    w.u32("tokenizer.ggml.bos_token_id", IM_START);
    w.u32("tokenizer.ggml.eos_token_id", IM_END);
    w.u32("tokenizer.ggml.padding_token_id", PAD);
    w.string("tokenizer.chat_template", CHAT_TEMPLATE);

    let vars = lm.vs.variables();
    let mut put = |gguf_name: &str, hf_name: &str, permute_heads: Option<i64>| {
        let mut t = vars[hf_name].shallow_clone();
        if let Some(n) = permute_heads {
            t = permute(&t, n);
        }
        let dims: Vec<u64> = t.size().iter().rev().map(|&d| d as u64).collect();
        w.tensor(gguf_name, &dims, 0, &f32_bytes(&t));
    };
    put("token_embd.weight", "model.embed_tokens.weight", None);
    put("output_norm.weight", "model.norm.weight", None);
    for i in 0..cfg.num_hidden_layers {
        let hf = |s: &str| format!("model.layers.{i}.{s}");
        put(
            &format!("blk.{i}.attn_norm.weight"),
            &hf("input_layernorm.weight"),
            None,
        );
        put(
            &format!("blk.{i}.ffn_norm.weight"),
            &hf("post_attention_layernorm.weight"),
            None,
        );
        put(
            &format!("blk.{i}.attn_q.weight"),
            &hf("self_attn.q_proj.weight"),
            Some(cfg.num_attention_heads as i64),
        );
        put(
            &format!("blk.{i}.attn_k.weight"),
            &hf("self_attn.k_proj.weight"),
            Some(cfg.num_kv_heads() as i64),
        );
        put(
            &format!("blk.{i}.attn_v.weight"),
            &hf("self_attn.v_proj.weight"),
            None,
        );
        put(
            &format!("blk.{i}.attn_output.weight"),
            &hf("self_attn.o_proj.weight"),
            None,
        );
        put(
            &format!("blk.{i}.ffn_gate.weight"),
            &hf("mlp.gate_proj.weight"),
            None,
        );
        put(
            &format!("blk.{i}.ffn_up.weight"),
            &hf("mlp.up_proj.weight"),
            None,
        );
        put(
            &format!("blk.{i}.ffn_down.weight"),
            &hf("mlp.down_proj.weight"),
            None,
        );
    }
    std::fs::write(path, w.finish()).unwrap();
    lm
}

#[test]
fn a_tiny_llama_gguf_imports_to_the_same_weights_and_a_working_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    let original = write_tiny_gguf(&gguf);
    let out = dir.path().join("imported");
    import_gguf(&gguf, &out).unwrap();
    let imported = CausalLm::load(&out, Device::Cpu, Kind::Float).unwrap();
    assert_eq!(imported.config.num_kv_heads(), 2);
    assert!(imported.config.tie_word_embeddings);
    let (a, b) = (original.vs.variables(), imported.vs.variables());
    for (name, t) in &a {
        assert!(
            t.equal(&b[name]),
            "{name} differs after GGUF import (permutation not undone?)"
        );
    }
    let tokenizer = Tokenizer::from_dir(&out).unwrap();
    assert_eq!(tokenizer.eos_id, IM_END);
    assert_eq!(tokenizer.pad_id, PAD);
    assert_eq!(
        tokenizer.encode("hi<|im_end|>", false).unwrap(),
        vec![104, 105, IM_END]
    );
    let text = tokenizer
        .require_chat_template()
        .unwrap()
        .apply(&[tiller_data::ChatMessage::user("x")], true)
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    );
}

fn gguf_error(bytes: Vec<u8>) -> String {
    let path = Path::new("bad.gguf");
    GgufFile::parse(path, bytes)
        .expect_err("should fail")
        .to_string()
}

#[test]
fn corrupt_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    write_tiny_gguf(&gguf);
    let bytes = std::fs::read(&gguf).unwrap();

    let err = gguf_error(bytes[..bytes.len() - 100].to_vec());
    assert!(
        err.contains("bad.gguf") && err.contains("truncated"),
        "{err}"
    );
    let err = gguf_error(bytes[..200].to_vec());
    assert!(err.contains("truncated"), "{err}");
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    assert!(gguf_error(bad_magic).contains("bad magic"));
    let mut v1 = bytes.clone();
    v1[4] = 1;
    assert!(gguf_error(v1).contains("version 1"));
    assert!(gguf_error(Vec::new()).contains("truncated"));
}

#[test]
fn unsupported_quantization_type_and_architecture_are_named() {
    let mut w = Writer::default();
    w.string("general.architecture", "llama");
    w.tensor("token_embd.weight", &[32, 1], 6, &[0u8; 22]);
    let err = gguf_error(w.finish());
    assert!(
        err.contains("token_embd.weight") && err.contains("Q5_0"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let mut w = Writer::default();
    w.string("general.architecture", "gpt2");
    std::fs::write(&path, w.finish()).unwrap();
    let err = import_gguf(&path, &dir.path().join("out"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("gpt2") && err.contains("not supported"),
        "{err}"
    );
}
