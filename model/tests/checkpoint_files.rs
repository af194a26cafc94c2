//! The model crate's closed choices and file writing: unknown RoPE types are errors naming
//! config.json (or the GGUF) and the key, LoRA targets are an enum with the right HF block,
//! saved checkpoints carry their true dtype and leave no temporary files behind.

use tch::{Device, Kind};
use tiller_model::checkpoint::copy_tokenizer_files;
use tiller_model::gguf::import::config_from_gguf;
use tiller_model::gguf::{GgufFile, GgufWriter, MetadataValue};
use tiller_model::lora::Projection;
use tiller_model::testing::{tiny_config, write_tiny_checkpoint};
use tiller_model::{CausalLm, Lora, LoraConfig};

fn load_error(config_edit: serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(dir.path(), 1).unwrap();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["rope_scaling"] = config_edit;
    std::fs::write(&path, config.to_string()).unwrap();
    match CausalLm::load(dir.path(), Device::Cpu, Kind::Float) {
        Ok(_) => panic!("loaded a config with {}", config["rope_scaling"]),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_rope_types_name_the_file_the_key_and_the_supported_list() {
    let err = load_error(serde_json::json!({"rope_type": "dynamic", "factor": 2.0}));
    assert!(
        err.contains("config.json")
            && err.contains("rope_scaling.rope_type")
            && err.contains("dynamic")
            && err.contains("default, linear, llama3"),
        "{err}"
    );
    let err = load_error(serde_json::json!({"type": "yarn", "factor": 2.0}));
    assert!(
        err.contains("rope_scaling.type") && err.contains("yarn"),
        "{err}"
    );
    let err = load_error(serde_json::json!({"rope_type": "linear"}));
    assert!(err.contains("rope_scaling.factor"), "{err}");
    // A supported type still loads.
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.rope_scaling = Some(tiller_model::config::RopeScaling {
        rope_type: tiller_model::config::RopeType::Linear,
        factor: Some(2.0),
        low_freq_factor: None,
        high_freq_factor: None,
        original_max_position_embeddings: None,
    });
    CausalLm::random(&config, Device::Cpu, Kind::Float, 1)
        .save(dir.path(), None)
        .unwrap();
    let back = CausalLm::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(back.config.rope_scaling, config.rope_scaling);
}

#[test]
fn a_gguf_with_an_unknown_rope_scaling_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yarn.gguf");
    let mut w = GgufWriter::new();
    w.set(
        "general.architecture",
        MetadataValue::String("llama".into()),
    );
    for (key, v) in [
        ("llama.embedding_length", 64),
        ("llama.attention.head_count", 4),
        ("llama.feed_forward_length", 128),
        ("llama.block_count", 1),
        ("llama.vocab_size", 259),
    ] {
        w.set(key, MetadataValue::U32(v));
    }
    w.set(
        "llama.rope.scaling.type",
        MetadataValue::String("yarn".into()),
    );
    w.write(&path).unwrap();
    let err = config_from_gguf(&GgufFile::open(&path).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("yarn.gguf")
            && err.contains("llama.rope.scaling.type")
            && err.contains("yarn"),
        "{err}"
    );
}

#[test]
fn lora_projections_sit_in_their_hf_blocks() {
    let names: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj"
        ]
    );
    for p in Projection::ALL {
        let expected = if ["gate_proj", "up_proj", "down_proj"].contains(&p.name()) {
            "mlp"
        } else {
            "self_attn"
        };
        assert_eq!(p.block(), expected, "{p:?}");
        assert_eq!(Projection::parse(p.name()), Some(p));
    }
    assert_eq!(Projection::parse("qkv_proj"), None);
    let mut lm = CausalLm::random(&tiny_config(), Device::Cpu, Kind::Float, 1);
    let config = LoraConfig {
        target_modules: names.iter().map(|n| n.to_string()).collect(),
        ..LoraConfig::default()
    };
    let lora = Lora::attach(&mut lm, &config, 0).unwrap();
    let vars = lora.vs.variables();
    for name in [
        "base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight",
        "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight",
        "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight",
    ] {
        assert!(vars.contains_key(name), "{name} missing");
    }
    assert_eq!(vars.len(), 2 * 7 * 2);
}

#[test]
fn saves_record_the_true_dtype_and_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_tiny_checkpoint(&src, 2).unwrap();
    for (kind, name) in [
        (Kind::BFloat16, "bfloat16"),
        (Kind::Half, "float16"),
        (Kind::Float, "float32"),
    ] {
        let out = dir.path().join(name);
        let lm = CausalLm::load(&src, Device::Cpu, kind).unwrap();
        lm.save(&out, Some(&src)).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["torch_dtype"], name);
        let mut files: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json"
            ]
        );
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            assert_eq!(
                std::fs::read(out.join(f)).unwrap(),
                std::fs::read(src.join(f)).unwrap()
            );
        }
    }
    let lm = CausalLm::load(&src, Device::Cpu, Kind::Float).unwrap();
    let mut int = CausalLm::random(&lm.config, Device::Cpu, Kind::Float, 0);
    int.vs.set_kind(Kind::Double);
    let err = int
        .save(&dir.path().join("f64"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Double"), "{err}");
    // Copying into a directory that already has the files replaces them whole.
    copy_tokenizer_files(&src, &dir.path().join("float32")).unwrap();
}
