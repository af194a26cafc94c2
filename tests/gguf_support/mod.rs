//! What the GGUF export tests share: running `tiller` and .venv-test's python (the tests
//! fail, not skip, without it: scripts/test_venv.sh makes it), the reference texts and
//! their logits, and the two outside readers of a GGUF file: PyPI's `gguf` package and
//! transformers' GGUF loader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tiller_data::Tokenizer;
use tiller_model::gguf::{dequantize, GgufFile, MetadataValue};
use tiller_model::{score, CausalLm, ScoreRequest};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn default_model() -> PathBuf {
    let dir = root().join("models/smollm2-135m-instruct");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/setup.sh first",
        dir.display()
    );
    dir
}

pub fn python() -> PathBuf {
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

pub fn tiller(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiller"))
        .args(args)
        .output()
        .expect("run tiller")
}

pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn export_and_import(src: &Path, ty: &str, work: &Path) -> (PathBuf, PathBuf) {
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
pub fn texts() -> Vec<String> {
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
pub fn all_logits(dir: &Path, texts: &[String]) -> Vec<Tensor> {
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
pub const GGUF_READER: &str = r#"
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

pub fn run_python(script: &str, args: &[&Path]) -> Value {
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
pub fn same(py: &Value, ours: &MetadataValue) -> bool {
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
pub fn assert_gguf_package_agrees(path: &Path) {
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
pub const TRANSFORMERS: &str = r#"
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

/// Max and mean absolute difference of the logits of `a` and `b` over `texts`.
pub fn logit_error(a: &Path, b: &Path, texts: &[String]) -> (f64, f64) {
    let (mut worst, mut total, mut count) = (0.0f64, 0.0f64, 0i64);
    for (x, y) in all_logits(a, texts).iter().zip(all_logits(b, texts)) {
        let diff = (x - y).abs();
        worst = worst.max(diff.max().double_value(&[]));
        total += diff.sum(Kind::Double).double_value(&[]);
        count += diff.numel() as i64;
    }
    (worst, total / count as f64)
}

/// Runs transformers' GGUF loader on `gguf` over `texts` and checks that its token ids equal
/// Tiller's (the tokenizer of `dir`) and its summed log-probabilities equal those of the
/// model in `dir` within `tolerance`; returns (transformers' JSON, the largest gap).
pub fn assert_transformers_agrees(
    gguf: &Path,
    dir: &Path,
    texts: &[String],
    work: &Path,
    tolerance: f64,
) -> (Value, f64) {
    let texts_file = work.join("texts.json");
    std::fs::write(&texts_file, serde_json::to_string(texts).unwrap()).unwrap();
    let hf = run_python(TRANSFORMERS, &[gguf, &texts_file]);
    let tokenizer = Tokenizer::from_dir(dir).unwrap();
    let lm = CausalLm::load(dir, Device::Cpu, Kind::Float).unwrap();
    let mut requests = Vec::new();
    for (text, theirs) in texts.iter().zip(hf["results"].as_array().unwrap()) {
        let ids = tokenizer.encode(text, false).unwrap();
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
            (s.logprob - theirs).abs() <= tolerance,
            "{text:?}: tiller {} vs transformers on {} {theirs}",
            s.logprob,
            gguf.display()
        );
    }
    (hf, worst)
}

/// tests/gguf_quant_reference.py: `quantized`'s tensors re-made from `f32`'s by the
/// reference quantizers (gguf-py's Q8_0, llama.cpp's Q4_K in numpy), compared byte for byte.
pub fn quant_reference(f32_gguf: &Path, quantized: &Path) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/gguf_quant_reference.py"))
        .args([f32_gguf, quantized])
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
