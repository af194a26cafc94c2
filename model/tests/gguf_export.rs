//! GGUF export on a tiny random model: f32 export re-imports bit-exactly (weights and
//! logits), q8_0 within its rounding bound, the q/k rows in llama.cpp's order, the
//! quantizer against hand-computed blocks, metadata of every type through writer and
//! reader, LoRA adapters merged before export, and clear errors for what cannot export.

use std::path::Path;

use half::f16;
use tch::{Device, Kind, Tensor};
use tiller_data::{ChatMessage, Tokenizer};
use tiller_model::checkpoint::with_torch_seed;
use tiller_model::config::TokenIds;
use tiller_model::gguf::quant::quantize;
use tiller_model::gguf::{
    dequantize, export_gguf, import_gguf, ExportType, GgmlType, GgufFile, GgufWriter, MetadataValue,
};
use tiller_model::testing::{tiny_config, write_tiny_tokenizer, IM_END, IM_START, PAD};
use tiller_model::{CausalLm, Lora, LoraConfig};

/// A tiny checkpoint whose config survives GGUF's f32 hyper-parameters exactly (GGUF
/// stores rms_norm_eps as f32; an f64 eps would come back a few ulps off).
fn write_model(dir: &Path, seed: i64) -> CausalLm {
    let mut config = tiny_config();
    config.rms_norm_eps = f64::from(1e-5f32);
    let lm = CausalLm::random(&config, Device::Cpu, Kind::Float, seed);
    lm.save(dir, None).unwrap();
    write_tiny_tokenizer(dir).unwrap();
    lm
}

fn logits(lm: &CausalLm) -> Tensor {
    let ids = with_torch_seed(5, || {
        Tensor::randint(259, [2, 10], (Kind::Int64, Device::Cpu))
    });
    let pos = Tensor::arange(10, (Kind::Int64, Device::Cpu)).expand([2, 10], false);
    tch::no_grad(|| lm.model.logits(&lm.model.forward(&ids, &pos, None, None)))
}

fn round_trip(src: &Path, ty: ExportType, work: &Path) -> (GgufFile, CausalLm) {
    let gguf = work.join(format!("{ty:?}.gguf"));
    export_gguf(src, &gguf, ty).unwrap();
    let back = work.join(format!("{ty:?}-imported"));
    import_gguf(&gguf, &back).unwrap();
    (
        GgufFile::open(&gguf).unwrap(),
        CausalLm::load(&back, Device::Cpu, Kind::Float).unwrap(),
    )
}

fn tensor_type(file: &GgufFile, name: &str) -> GgmlType {
    file.tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .ggml_type
}

#[test]
fn f32_export_reimports_bit_exactly_with_its_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    let original = write_model(&src, 3);
    let (file, back) = round_trip(&src, ExportType::F32, dir.path());

    // The config comes back as written, plus the BOS id the tokenizer names.
    assert_eq!(back.config.bos_token_id, Some(TokenIds::One(IM_START)));
    assert_eq!(back.config, {
        let mut c = original.config.clone();
        c.architectures = back.config.architectures.clone();
        c.torch_dtype = back.config.torch_dtype.clone();
        c.bos_token_id = back.config.bos_token_id.clone();
        c
    });
    let (a, b) = (original.vs.variables(), back.vs.variables());
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs after export + import");
    }
    assert!(logits(&original).equal(&logits(&back)));

    let str_key = |k: &str| {
        file.get(k)
            .and_then(MetadataValue::as_str)
            .unwrap()
            .to_owned()
    };
    assert_eq!(str_key("general.architecture"), "llama");
    assert_eq!(str_key("tokenizer.ggml.model"), "gpt2");
    assert_eq!(str_key("tokenizer.ggml.pre"), "gpt2");
    assert_eq!(
        file.get("llama.block_count")
            .and_then(MetadataValue::as_u64),
        Some(2)
    );
    assert_eq!(tensor_type(&file, "blk.0.attn_q.weight"), GgmlType::F32);

    let tokenizer = Tokenizer::from_dir(&back_dir(dir.path(), ExportType::F32)).unwrap();
    let source = Tokenizer::from_dir(&src).unwrap();
    assert_eq!((tokenizer.eos_id, tokenizer.pad_id), (IM_END, PAD));
    for text in [
        "hi<|im_end|>",
        "héllo wörld",
        "<|im_start|>user\nx<|im_end|>",
    ] {
        assert_eq!(
            tokenizer.encode(text, false).unwrap(),
            source.encode(text, false).unwrap()
        );
    }
    let chat = [ChatMessage::user("x")];
    let render = |t: &Tokenizer| {
        t.require_chat_template()
            .unwrap()
            .apply(&chat, true)
            .unwrap()
    };
    assert_eq!(render(&tokenizer), render(&source));
}

fn back_dir(work: &Path, ty: ExportType) -> std::path::PathBuf {
    work.join(format!("{ty:?}-imported"))
}

/// llama.cpp's `permute` (convert_hf_to_gguf.py), written out independently of the crate.
fn llama_cpp_permute(w: &Tensor, n_heads: i64) -> Tensor {
    let s = w.size();
    w.view([n_heads, 2, s[0] / n_heads / 2, s[1]])
        .transpose(1, 2)
        .reshape([s[0], s[1]])
}

#[test]
fn q_and_k_rows_are_in_llama_cpp_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    let lm = write_model(&src, 4);
    let gguf = dir.path().join("m.gguf");
    export_gguf(&src, &gguf, ExportType::F32).unwrap();
    let file = GgufFile::open(&gguf).unwrap();
    let vars = lm.vs.variables();
    for (gguf_name, hf_name, heads) in [
        (
            "blk.1.attn_q.weight",
            "model.layers.1.self_attn.q_proj.weight",
            4,
        ),
        (
            "blk.1.attn_k.weight",
            "model.layers.1.self_attn.k_proj.weight",
            2,
        ),
        (
            "blk.1.attn_v.weight",
            "model.layers.1.self_attn.v_proj.weight",
            0,
        ),
    ] {
        let info = file.tensors.iter().find(|t| t.name == gguf_name).unwrap();
        let values = dequantize(info.ggml_type, file.tensor_bytes(info).unwrap());
        let written = Tensor::from_slice(&values).view(info.torch_shape().as_slice());
        let original = &vars[hf_name];
        let expected = if heads > 0 {
            llama_cpp_permute(original, heads)
        } else {
            original.shallow_clone()
        };
        assert!(written.equal(&expected), "{gguf_name}");
    }
}

#[test]
fn q8_0_export_stays_within_the_rounding_bound() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    let original = write_model(&src, 5);
    let (file, back) = round_trip(&src, ExportType::Q8_0, dir.path());
    assert_eq!(tensor_type(&file, "blk.0.ffn_down.weight"), GgmlType::Q8_0);
    assert_eq!(tensor_type(&file, "token_embd.weight"), GgmlType::Q8_0);
    assert_eq!(tensor_type(&file, "blk.0.attn_norm.weight"), GgmlType::F32);
    assert_eq!(
        file.get("general.file_type")
            .and_then(MetadataValue::as_u64),
        Some(7)
    );
    let (a, b) = (original.vs.variables(), back.vs.variables());
    for (name, t) in &a {
        let err = (t - &b[name]).abs().max().double_value(&[]);
        // Half a step of the block with the largest magnitude, plus the scale's f16
        // rounding (2^-11 relative, times |q| ≤ 127): 0.562 steps at most.
        let bound = t.abs().max().double_value(&[]) / 127.0 * 0.57;
        assert!(err <= bound, "{name}: error {err} above {bound}");
        if t.dim() == 1 {
            assert!(t.equal(&b[name]), "{name}: 1-D tensors stay f32");
        }
    }
    let (a, b) = (logits(&original), logits(&back));
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = a.abs().max().double_value(&[]);
    assert!(
        diff > 0.0 && diff <= 0.02 * scale,
        "q8_0 logits moved by {diff} (max |logit| {scale})"
    );
}

#[test]
fn f16_export_rounds_each_weight_to_f16() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    let original = write_model(&src, 6);
    let (file, back) = round_trip(&src, ExportType::F16, dir.path());
    assert_eq!(tensor_type(&file, "blk.0.attn_k.weight"), GgmlType::F16);
    let w = &original.vs.variables()["model.layers.0.mlp.up_proj.weight"];
    let rounded = w.to_kind(Kind::Half).to_kind(Kind::Float);
    assert!(rounded.equal(&back.vs.variables()["model.layers.0.mlp.up_proj.weight"]));
}

#[test]
fn q8_0_blocks_match_ggml_by_hand() {
    // max |x| = 127 gives d = 1 exactly: q is x rounded, halves away from zero.
    let mut block: Vec<f32> = vec![0.0; 32];
    block[0] = 127.0;
    block[1] = 2.5;
    block[2] = -2.5;
    block[3] = 0.49;
    block[4] = -126.6;
    let bytes = quantize(GgmlType::Q8_0, &block).unwrap();
    assert_eq!(bytes.len(), 34);
    assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(), 1.0);
    let q: Vec<i8> = bytes[2..].iter().map(|&b| b as i8).collect();
    assert_eq!(&q[..5], &[127, 3, -3, 0, -127]);
    assert!(q[5..].iter().all(|&v| v == 0));
    // All zeros: scale 0, no division by zero.
    let zeros = quantize(GgmlType::Q8_0, &[0.0; 32]).unwrap();
    assert!(zeros.iter().all(|&b| b == 0));
    // A general block comes back within half a step.
    let values: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
        .collect();
    let back = dequantize(GgmlType::Q8_0, &quantize(GgmlType::Q8_0, &values).unwrap());
    let step = 11.0 * 0.173 / 127.0;
    for (x, y) in values.iter().zip(&back) {
        assert!((x - y).abs() <= step * 0.57, "{x} -> {y}");
    }
    assert!(quantize(GgmlType::Q8_0, &[1.0; 31]).is_none());
}

#[test]
fn every_metadata_type_survives_writer_and_reader() {
    use MetadataValue as V;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.gguf");
    let values = vec![
        ("u8", V::U8(7)),
        ("i8", V::I8(-7)),
        ("u16", V::U16(700)),
        ("i16", V::I16(-700)),
        ("u32", V::U32(70_000)),
        ("i32", V::I32(-70_000)),
        ("u64", V::U64(7 << 40)),
        ("i64", V::I64(-(7 << 40))),
        ("f32", V::F32(0.25)),
        ("f64", V::F64(-1e300)),
        ("bool", V::Bool(true)),
        ("string", V::String("héllo".into())),
        ("ints", V::Array(vec![V::I32(1), V::I32(-2)])),
        ("strings", V::Array(vec![V::String("a b".into())])),
        ("empty", V::Array(vec![])),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &values {
        w.set(k, v.clone());
    }
    let row: Vec<u8> = [1.5f32, -2.0, 3.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    w.add_tensor("t", vec![3, 1], GgmlType::F32, row.clone())
        .unwrap();
    w.add_tensor("u", vec![3], GgmlType::F32, row).unwrap();
    let e = w
        .add_tensor("bad", vec![4], GgmlType::F32, vec![0; 12])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`bad`") && e.contains("12 bytes"), "{e}");
    w.write(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.metadata.len(), values.len());
    for (k, v) in &values {
        assert_eq!(file.get(k), Some(v), "{k}");
    }
    for t in &file.tensors {
        assert_eq!(t.offset % 32, 0);
        assert_eq!(
            dequantize(t.ggml_type, file.tensor_bytes(t).unwrap()),
            [1.5, -2.0, 3.0]
        );
    }
    let mut mixed = GgufWriter::new();
    mixed.set("mixed", V::Array(vec![V::U8(1), V::I8(1)]));
    let err = mixed.write(&path).unwrap_err().to_string();
    assert!(err.contains("mixed"), "{err}");
}

#[test]
fn a_lora_adapter_is_merged_before_export() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let mut lm = write_model(&base, 8);
    let config = LoraConfig {
        target_modules: vec!["q_proj".into(), "down_proj".into()],
        ..LoraConfig::default()
    };
    let lora = Lora::attach(&mut lm, &config, 2).unwrap();
    tch::no_grad(|| {
        for (_, b) in lora
            .vs
            .variables()
            .iter()
            .filter(|(n, _)| n.contains("lora_B"))
        {
            let mut b = b.shallow_clone();
            let noise = b.randn_like() * 0.05;
            b.copy_(&noise);
        }
    });
    let adapter = dir.path().join("adapter");
    lora.save(&adapter, base.to_str().unwrap()).unwrap();
    let (_, back) = round_trip(&adapter, ExportType::F32, dir.path());
    let merged = CausalLm::load(&adapter, Device::Cpu, Kind::Float).unwrap();
    let plain = CausalLm::load(&base, Device::Cpu, Kind::Float).unwrap();
    assert!(logits(&back).equal(&logits(&merged)));
    assert!(!logits(&back).allclose(&logits(&plain), 1e-6, 1e-6, false));
}

#[test]
fn what_cannot_be_exported_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    write_model(&src, 9);
    let out = dir.path().join("x.gguf");

    let config_path = src.join("config.json");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = export_gguf(&src, &out, ExportType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("llama3"),
        "{err}"
    );
    std::fs::write(&config_path, text).unwrap();

    let tok_path = src.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tok_path).unwrap()).unwrap();
    tok["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
    std::fs::write(&tok_path, tok.to_string()).unwrap();
    let err = export_gguf(&src, &out, ExportType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("pre_tokenizer"),
        "{err}"
    );
    assert!(!out.exists(), "a failed export leaves no file");

    let err = "q4_z".parse::<ExportType>().unwrap_err().to_string();
    assert!(err.contains("q4_z") && err.contains("q8_0"), "{err}");
}

#[test]
fn pre_tokenizers_get_llama_cpp_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("model");
    write_model(&src, 10);
    let tok_path = src.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tok_path).unwrap()).unwrap();
    let byte_level = |regex: bool| serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    for (pre, name) in [
        (byte_level(true), "gpt2"),
        (
            serde_json::json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            "smollm",
        ),
        (
            serde_json::json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated", "invert": false},
                byte_level(false)]}),
            "llama-bpe",
        ),
    ] {
        tok["pre_tokenizer"] = pre;
        std::fs::write(&tok_path, tok.to_string()).unwrap();
        let out = dir.path().join(format!("{name}.gguf"));
        export_gguf(&src, &out, ExportType::F16).unwrap();
        let file = GgufFile::open(&out).unwrap();
        let pre = file
            .get("tokenizer.ggml.pre")
            .and_then(MetadataValue::as_str);
        assert_eq!(pre, Some(name));
    }
}
