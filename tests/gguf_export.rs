//! `tiller model export` as a user runs it, verified three ways on the real default model:
//! `tiller model import` of the exported file gives the same logits (bit-exact for f32;
//! for q8_0, every tensor byte-identical to gguf-py's reference quantizer); PyPI's `gguf`
//! reader reads every key and tensor as Tiller's reader does; transformers' GGUF loader
//! loads the f32 file and its log-likelihoods match Tiller's within 1e-3. The Python side lives in .venv-test (scripts/test_venv.sh); the
//! tests fail, not skip, without it. Plus the CLI's LoRA and bad-input paths on a tiny model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tiller_data::{ChatMessage, Tokenizer};
use tiller_model::gguf::{dequantize, GgufFile, MetadataValue};
use tiller_model::testing::write_tiny_checkpoint;
use tiller_model::{score, CausalLm, Lora, LoraConfig, ScoreRequest};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_model() -> PathBuf {
    let dir = root().join("models/smollm2-135m-instruct");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh first",
        dir.display()
    );
    dir
}

fn python() -> PathBuf {
    let python = std::env::var_os("TILLER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-test/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/test_venv.sh (it installs gguf, transformers and torch)",
        python.display()
    );
    python
}

fn tiller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .output()
        .expect("run tiller")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn export_and_import(src: &Path, ty: &str, work: &Path) -> (PathBuf, PathBuf) {
    let gguf = work.join(format!("{ty}.gguf"));
    let imported = work.join(format!("{ty}-imported"));
    let (s, g, i) = (
        src.to_str().unwrap(),
        gguf.to_str().unwrap(),
        imported.to_str().unwrap(),
    );
    assert!(ok(tiller(&["model", "export", s, "--gguf", g, "--type", ty])).contains("exported"));
    ok(tiller(&["model", "import", g, "--out", i]));
    (gguf, imported)
}

/// The texts of the transformers reference fixture (ASCII, accents, emoji, code, chat markup).
fn texts() -> Vec<String> {
    let path = root().join("tests/fixtures/smollm2_reference.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fixture["tokenization"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Logits (t, vocab) of every text, one forward each.
fn all_logits(dir: &Path, texts: &[String]) -> Vec<Tensor> {
    let lm = CausalLm::load(dir, Device::Cpu, Kind::Float).unwrap();
    let tokenizer = Tokenizer::from_dir(dir).unwrap();
    texts
        .iter()
        .map(|text| {
            let ids: Vec<i64> = tokenizer
                .encode(text, false)
                .unwrap()
                .iter()
                .map(|&i| i64::from(i))
                .collect();
            let t = ids.len() as i64;
            let ids = Tensor::from_slice(&ids).view([1, t]);
            let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]);
            tch::no_grad(|| lm.model.logits(&lm.model.forward(&ids, &pos, None, None)))
        })
        .collect()
}

/// Reads a GGUF with PyPI's `gguf` (GGUFReader + quants.dequantize): every key's value and
/// every tensor's name, type, GGML shape and dequantized sums.
const GGUF_READER: &str = r#"
import json, sys
import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize
r = GGUFReader(sys.argv[1])
def scalar(t, part):
    return str(bytes(part), encoding="utf-8") if t == GGUFValueType.STRING else part.tolist()[0]
keys = {}
for name, field in r.fields.items():
    if name.startswith("GGUF."):  # the header's counts, not keys
        continue
    if field.types[0] == GGUFValueType.ARRAY:
        keys[name] = [scalar(field.types[-1], field.parts[i]) for i in field.data]
    else:
        keys[name] = scalar(field.types[0], field.parts[field.data[0]])
tensors = []
for t in r.tensors:
    values = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
    tensors.append({"name": t.name, "type": t.tensor_type.name, "shape": [int(d) for d in t.shape],
                    "sum": float(values.sum()), "abs_sum": float(np.abs(values).sum()),
                    "head": [float(v) for v in values[:8]]})
print(json.dumps({"keys": keys, "tensors": tensors}))
"#;

fn run_python(script: &str, args: &[&Path]) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python's JSON")
}

/// Whether `py` (JSON from Python) holds `ours`; floats within 1e-12 relative, since a JSON
/// float's last digit may round either way on parsing.
fn same(py: &Value, ours: &MetadataValue) -> bool {
    use MetadataValue as V;
    let float = |x: f64| {
        py.as_f64()
            .is_some_and(|p| (p - x).abs() <= 1e-12 * x.abs())
    };
    match ours {
        V::String(s) => py.as_str() == Some(s.as_str()),
        V::Bool(b) => py.as_bool() == Some(*b),
        V::F32(x) => float(f64::from(*x)),
        V::F64(x) => float(*x),
        V::Array(items) => py.as_array().is_some_and(|p| {
            p.len() == items.len() && p.iter().zip(items).all(|(a, b)| same(a, b))
        }),
        V::I8(x) => py.as_i64() == Some(i64::from(*x)),
        V::I16(x) => py.as_i64() == Some(i64::from(*x)),
        V::I32(x) => py.as_i64() == Some(i64::from(*x)),
        V::I64(x) => py.as_i64() == Some(*x),
        V::U8(_) | V::U16(_) | V::U32(_) | V::U64(_) => py.as_u64() == ours.as_u64(),
    }
}

/// PyPI's reader sees the same keys, values and tensors as Tiller's reader and dequantizer.
fn assert_gguf_package_agrees(path: &Path) {
    let seen = run_python(GGUF_READER, &[path]);
    let file = GgufFile::open(path).unwrap();
    let keys = seen["keys"].as_object().unwrap();
    assert_eq!(keys.len(), file.metadata.len(), "key count");
    for (key, value) in &file.metadata {
        let py = keys
            .get(key)
            .unwrap_or_else(|| panic!("gguf does not see key {key}"));
        assert!(same(py, value), "key {key}: gguf reads {py}");
    }
    let tensors = seen["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), file.tensors.len());
    for (py, t) in tensors.iter().zip(&file.tensors) {
        assert_eq!(py["name"], t.name.as_str());
        assert_eq!(
            py["type"].as_str().unwrap().replace('_', ""),
            format!("{:?}", t.ggml_type).replace('_', "").to_uppercase()
        );
        let dims: Vec<u64> = py["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(dims, t.dims, "{}", t.name);
        let values = dequantize(t.ggml_type, file.tensor_bytes(t).unwrap());
        let head: Vec<MetadataValue> = values
            .iter()
            .take(8)
            .map(|&v| MetadataValue::F32(v))
            .collect();
        assert!(
            same(&py["head"], &MetadataValue::Array(head)),
            "{}: first values",
            t.name
        );
        for (key, ours) in [
            ("sum", values.iter().map(|&v| f64::from(v)).sum::<f64>()),
            (
                "abs_sum",
                values.iter().map(|&v| f64::from(v).abs()).sum::<f64>(),
            ),
        ] {
            let theirs = py[key].as_f64().unwrap();
            assert!(
                (theirs - ours).abs() <= 1e-9 * (1.0 + ours.abs()),
                "{} {key}: gguf {theirs} vs tiller {ours}",
                t.name
            );
        }
    }
}

/// transformers' GGUF loader: token ids and summed log-probabilities of every token but the
/// first (as the reference fixture), and the chat template rendered by the GGUF's tokenizer.
const TRANSFORMERS: &str = r#"
import json, pathlib, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(1)
path = pathlib.Path(sys.argv[1])
texts = json.loads(pathlib.Path(sys.argv[2]).read_text())
tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
results = []
with torch.no_grad():
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        x = torch.tensor([ids])
        logp = torch.log_softmax(model(x).logits.float()[0, :-1], dim=-1)
        results.append({"ids": ids, "logprob": logp.gather(1, x[0, 1:].unsqueeze(1)).sum().item()})
chat = tok.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False, add_generation_prompt=True)
print(json.dumps({"results": results, "chat": chat, "eos": tok.eos_token_id}))
"#;

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

    let texts_file = work.path().join("texts.json");
    std::fs::write(&texts_file, serde_json::to_string(&texts).unwrap()).unwrap();
    let hf = run_python(TRANSFORMERS, &[&gguf, &texts_file]);
    assert_eq!(hf["chat"], render(&ours).as_str());
    assert_eq!(hf["eos"], ours.eos_id);
    let lm = CausalLm::load(&src, Device::Cpu, Kind::Float).unwrap();
    let mut requests = Vec::new();
    for (text, theirs) in texts.iter().zip(hf["results"].as_array().unwrap()) {
        let ids = ours.encode(text, false).unwrap();
        assert_eq!(
            theirs["ids"],
            serde_json::json!(ids),
            "token ids of {text:?}"
        );
        requests.push(ScoreRequest {
            context: ids[..1].to_vec(),
            continuation: ids[1..].to_vec(),
        });
    }
    let scores = score(&lm, &requests, 1).unwrap();
    let mut worst = 0.0f64;
    for ((text, theirs), s) in texts
        .iter()
        .zip(hf["results"].as_array().unwrap())
        .zip(&scores)
    {
        let theirs = theirs["logprob"].as_f64().unwrap();
        worst = worst.max((s.logprob - theirs).abs());
        assert!(
            (s.logprob - theirs).abs() <= 1e-3,
            "{text:?}: tiller {} vs transformers on the exported GGUF {theirs}",
            s.logprob
        );
    }
    println!("f32: transformers' log-likelihoods within {worst:.2e} of tiller's");
}

/// gguf-py's own Q8_0 quantizer (the reference of ggml's `quantize_row_q8_0_ref`) run on
/// the f32 export's tensors, compared byte for byte with Tiller's q8_0 export.
const Q8_0_REFERENCE: &str = r#"
import json, sys
import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.quants import quantize
f32 = {t.name: t for t in GGUFReader(sys.argv[1]).tensors}
same, differ = {}, []
for t in GGUFReader(sys.argv[2]).tensors:
    src = np.asarray(f32[t.name].data, dtype=np.float32)
    ref = src if t.tensor_type == T.F32 else quantize(src, t.tensor_type)
    ok = np.array_equal(np.ascontiguousarray(ref).view(np.uint8).reshape(-1),
                        np.ascontiguousarray(t.data).view(np.uint8).reshape(-1))
    if ok:
        same[t.tensor_type.name] = same.get(t.tensor_type.name, 0) + 1
    else:
        differ.append(t.name)
print(json.dumps({"same": same, "differ": differ}))
"#;

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
    let f32_gguf = work.path().join("ref.gguf");
    let (s, f) = (src.to_str().unwrap(), f32_gguf.to_str().unwrap());
    ok(tiller(&[
        "model", "export", s, "--gguf", f, "--type", "f32",
    ]));
    let reference = run_python(Q8_0_REFERENCE, &[&f32_gguf, &gguf]);
    assert_eq!(
        reference["differ"],
        serde_json::json!([]),
        "tensors unlike gguf-py's Q8_0"
    );
    assert_eq!(reference["same"]["Q8_0"], 211);
    assert_eq!(reference["same"]["F32"], 61);

    let texts = texts();
    let (mut worst, mut total, mut count) = (0.0f64, 0.0f64, 0i64);
    for (a, b) in all_logits(&src, &texts)
        .iter()
        .zip(all_logits(&imported, &texts))
    {
        let diff = (a - b).abs();
        worst = worst.max(diff.max().double_value(&[]));
        total += diff.sum(Kind::Double).double_value(&[]);
        count += diff.numel() as i64;
    }
    let mean = total / count as f64;
    println!("q8_0: max abs logit error {worst:.3e}, mean {mean:.3e}");
    assert!(
        worst > 0.0 && worst <= 2.0 && mean <= 0.5,
        "q8_0 logit error max {worst}, mean {mean}"
    );
    assert_gguf_package_agrees(&gguf);
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
    assert!(e.contains("q3") && e.contains("f32, f16, q8_0"), "{e}");
    let e = err(&["model", "export", a, "--gguf", "out.bin"]);
    assert!(e.contains("--gguf") && e.contains(".gguf"), "{e}");
    let missing = work.path().join("nowhere");
    let e = err(&["model", "export", missing.to_str().unwrap(), "--gguf", g]);
    assert!(e.contains("nowhere") && e.contains("config.json"), "{e}");
}
