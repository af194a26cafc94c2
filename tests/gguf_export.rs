//! `tiller model export` as a user runs it, verified three ways on the real default model:
//! `tiller model import` of the exported file gives the same logits (bit-exact for f32;
//! for q8_0 and q4_k, every tensor byte-identical to a reference quantizer: gguf-py's
//! Q8_0, llama.cpp's Q4_K written in numpy); PyPI's `gguf` reader reads every key and
//! tensor as Tiller's reader does; transformers' GGUF loader loads the f32 and q4_k files
//! and its log-likelihoods match Tiller's within 1e-3. The Python side lives in .venv-test
//! (scripts/test_venv.sh); the tests fail, not skip, without it. Plus q4_k on a tiny model
//! whose every matrix is whole Q4_K super-blocks, and the CLI's LoRA and bad-input paths.

use std::path::Path;

use tch::{Device, Kind};
use tiller_data::{ChatMessage, Tokenizer};
use tiller_model::testing::{tiny_config, write_tiny_checkpoint, write_tiny_tokenizer};
use tiller_model::{CausalLm, Lora, LoraConfig};

mod gguf_support;
use gguf_support::*;

#[test]
fn f32_export_reimports_bit_exactly_and_loads_in_gguf_and_transformers() {
    let src = default_model();
    let work = tempfile::tempdir().unwrap();
    let (gguf, imported) = export_and_import(&src, "f32", work.path());
    let texts = texts();
    for (i, (a, b)) in all_logits(&src, &texts)
        .iter()
        .zip(all_logits(&imported, &texts))
        .enumerate()
    {
        assert!(
            a.equal(&b),
            "text {i}: logits differ after f32 export + import"
        );
    }
    let (ours, back) = (
        Tokenizer::from_dir(&src).unwrap(),
        Tokenizer::from_dir(&imported).unwrap(),
    );
    let chat = [ChatMessage::user("Hi there")];
    let render = |t: &Tokenizer| {
        t.require_chat_template()
            .unwrap()
            .apply(&chat, true)
            .unwrap()
    };
    assert_eq!(render(&back), render(&ours));
    assert_eq!(
        (back.eos_id, back.pad_id, back.bos_id),
        (ours.eos_id, ours.pad_id, ours.bos_id)
    );

    assert_gguf_package_agrees(&gguf);

    let (hf, worst) = assert_transformers_agrees(&gguf, &src, &texts, work.path(), 1e-3);
    assert_eq!(hf["chat"], render(&ours).as_str());
    assert_eq!(hf["eos"], ours.eos_id);
    println!("f32: transformers' log-likelihoods within {worst:.2e} of tiller's");
}

/// The issue asked for a max abs logit error of 1e-2, which a faithful q8_0 cannot give on
/// this model: gguf-py's own quantizer applied to its weights in transformers moves the
/// logits by up to 1.3 on two of these texts (mean 0.2-0.3; logits reach ±40). The test
/// therefore pins what can be: every tensor byte-identical to gguf-py's reference
/// quantizer, and the logit error within the size that quantizer itself produces.
#[test]
fn q8_0_export_matches_ggml_reference_quantizer_and_reads_in_gguf() {
    let src = default_model();
    let work = tempfile::tempdir().unwrap();
    let (gguf, imported) = export_and_import(&src, "q8_0", work.path());
    let f32_gguf = export(&src, "f32", &work.path().join("ref.gguf"));
    let reference = quant_reference(&f32_gguf, &gguf);
    assert_eq!(
        reference["differ"],
        serde_json::json!([]),
        "tensors unlike gguf-py's Q8_0"
    );
    assert_eq!(reference["same"]["Q8_0"], 211);
    assert_eq!(reference["same"]["F32"], 61);

    let (worst, mean) = logit_error(&src, &imported, &texts());
    println!("q8_0: max abs logit error {worst:.3e}, mean {mean:.3e}");
    assert!(
        worst > 0.0 && worst <= 2.0 && mean <= 0.5,
        "q8_0 logit error max {worst}, mean {mean}"
    );
    assert_gguf_package_agrees(&gguf);
}

/// q4_k on the default model: only `ffn_down` (rows of 1536 = 6 × 256) is whole Q4_K
/// super-blocks; every other matrix has rows of 576 and falls back to Q8_0. Each tensor is
/// byte-identical to its reference quantizer, and transformers' loader (which dequantizes
/// both types) gives the log-likelihoods of Tiller's import of the same file.
#[test]
fn q4_k_export_matches_the_reference_quantizers_and_loads_in_transformers() {
    let src = default_model();
    let work = tempfile::tempdir().unwrap();
    let (gguf, imported) = export_and_import(&src, "q4_k", work.path());
    let f32_gguf = export(&src, "f32", &work.path().join("ref.gguf"));
    let reference = quant_reference(&f32_gguf, &gguf);
    assert_eq!(
        reference["differ"],
        serde_json::json!([]),
        "tensors unlike the reference quantizers"
    );
    assert_eq!(reference["same"]["Q4_K"], 30, "{reference}");
    assert_eq!(reference["same"]["Q8_0"], 181, "{reference}");
    assert_eq!(reference["same"]["F32"], 61, "{reference}");
    let worst_rmse = worst_relative_rmse(&reference, "ffn_down");
    println!("q4_k: ffn_down relative RMSE up to {worst_rmse:.4}");
    // 4 bits with a searched scale and min per 32 values: a few percent of the weights' RMS.
    assert!(worst_rmse > 0.01 && worst_rmse < 0.15, "{worst_rmse}");

    let texts = texts();
    let (worst, mean) = logit_error(&src, &imported, &texts);
    println!("q4_k: max abs logit error {worst:.3e}, mean {mean:.3e}");
    assert!(
        worst > 0.0 && worst <= 8.0 && mean <= 1.0,
        "q4_k logit error max {worst}, mean {mean}"
    );
    assert_gguf_package_agrees(&gguf);
    let (_, gap) = assert_transformers_agrees(&gguf, &imported, &texts, work.path(), 1e-3);
    println!("q4_k: transformers' log-likelihoods within {gap:.2e} of tiller's import");
}

/// A tiny random model with hidden size 256 and MLP width 512, so every matrix (the
/// embedding included) is whole Q4_K super-blocks.
#[test]
fn q4_k_of_a_model_made_of_whole_super_blocks_is_all_q4_k() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("tiny256");
    let mut config = tiny_config();
    config.hidden_size = 256;
    config.intermediate_size = 512;
    let lm = CausalLm::random(&config, Device::Cpu, Kind::Float, 11);
    lm.save(&src, None).unwrap();
    write_tiny_tokenizer(&src).unwrap();
    let (gguf, imported) = export_and_import(&src, "q4_k", work.path());
    let f32_gguf = export(&src, "f32", &work.path().join("ref.gguf"));
    let reference = quant_reference(&f32_gguf, &gguf);
    assert_eq!(reference["differ"], serde_json::json!([]), "{reference}");
    // 2 layers × 7 matrices + the (tied) embedding; norms stay F32.
    assert_eq!(reference["same"]["Q4_K"], 15, "{reference}");
    assert!(reference["same"].get("Q8_0").is_none(), "{reference}");
    let worst_rmse = worst_relative_rmse(&reference, "");
    println!("tiny q4_k: relative RMSE up to {worst_rmse:.4}");
    assert!(worst_rmse > 0.01 && worst_rmse < 0.15, "{worst_rmse}");
    assert_gguf_package_agrees(&gguf);

    let texts: Vec<String> = ["hello there", "The quick brown fox.", "fn main() {}"]
        .map(String::from)
        .to_vec();
    let (worst, mean) = logit_error(&src, &imported, &texts);
    println!("tiny q4_k: max abs logit error {worst:.3e}, mean {mean:.3e}");
    let (q8_gguf, q8_imported) = export_and_import(&src, "q8_0", work.path());
    let (q8_worst, q8_mean) = logit_error(&src, &q8_imported, &texts);
    println!("tiny q8_0: max abs logit error {q8_worst:.3e}, mean {q8_mean:.3e}");
    assert!(std::fs::metadata(&q8_gguf).unwrap().len() > std::fs::metadata(&gguf).unwrap().len());
    // 4 bits lose more than 8, and neither is lossless.
    assert!(
        q8_worst > 0.0 && mean > q8_mean && worst < 1.0,
        "{worst} {mean} {q8_mean}"
    );
}

/// The worst relative RMSE of the quantized tensors whose name contains `part`.
fn worst_relative_rmse(reference: &serde_json::Value, part: &str) -> f64 {
    reference["rmse"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.contains(part))
        .map(|(_, v)| v.as_f64().unwrap())
        .fold(0.0, f64::max)
}

/// `tiller model export SRC --gguf OUT --type TY`; returns OUT.
fn export(src: &Path, ty: &str, out: &Path) -> std::path::PathBuf {
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    ok(tiller(&["model", "export", s, "--gguf", o, "--type", ty]));
    out.to_owned()
}

#[test]
fn lora_adapters_export_merged_and_bad_input_is_named() {
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    let mut lm = write_tiny_checkpoint(&base, 2).unwrap();
    let lora = Lora::attach(&mut lm, &LoraConfig::default(), 1).unwrap();
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
    let adapter = work.path().join("adapter");
    lora.save(&adapter, base.to_str().unwrap()).unwrap();
    tiller_model::checkpoint::copy_tokenizer_files(&base, &adapter).unwrap();
    let (gguf, imported) = export_and_import(&adapter, "f16", work.path());
    let merged = CausalLm::load(&adapter, Device::Cpu, Kind::Float).unwrap();
    let back = CausalLm::load(&imported, Device::Cpu, Kind::Float).unwrap();
    let w = "model.layers.1.self_attn.q_proj.weight";
    let expected = merged.vs.variables()[w]
        .to_kind(Kind::Half)
        .to_kind(Kind::Float);
    assert!(
        expected.equal(&back.vs.variables()[w]),
        "the adapter is merged into q_proj"
    );
    assert_gguf_package_agrees(&gguf);

    let (a, g) = (adapter.to_str().unwrap(), work.path().join("x.gguf"));
    let g = g.to_str().unwrap();
    let err = |args: &[&str]| {
        let out = tiller(args);
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["model", "export", a, "--gguf", g, "--type", "q3"]);
    assert!(
        e.contains("q3") && e.contains("f32, f16, q8_0, q4_k"),
        "{e}"
    );
    let e = err(&["model", "export", a, "--gguf", "out.bin"]);
    assert!(e.contains("--gguf") && e.contains(".gguf"), "{e}");
    let missing = work.path().join("nowhere");
    let e = err(&["model", "export", missing.to_str().unwrap(), "--gguf", g]);
    assert!(e.contains("nowhere") && e.contains("config.json"), "{e}");
}
