//! Save → reload round trips bit-exactly through the real loading path, and bad checkpoints and
//! bad inputs give clear errors instead of panics.

mod common_model;

use candle_core::{DType, Device, Tensor};
use common_model::model;
use oxrl_models::init::{random_tensors, write_random_weights, InitSpec};
use oxrl_models::save::save_model;
use oxrl_models::weights::{load_dir, save_file};
use oxrl_models::{
    Arch, CacheConfig, KvCache, LoraConfig, ModelError, StepLogits, StepSeq, Transformer,
};

fn tiny_dir(arch: Arch) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let spec = InitSpec {
        arch,
        vocab_size: 50,
        hidden_size: 16,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 1,
        intermediate_size: 24,
        ..InitSpec::default()
    };
    write_random_weights(&dir, &spec.config().unwrap(), 0.05, 1).unwrap();
    (tmp, dir)
}

#[test]
fn save_reload_is_bit_exact_and_merges_lora() {
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Mistral] {
        let (_, m) = model(arch, arch == Arch::Qwen3, DType::F32);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ckpt");
        save_model(&m, &dir, None).unwrap();
        let back = Transformer::load(&dir, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(back.config().arch, arch);
        let (a, b) = (
            m.named_tensors(false).unwrap(),
            back.named_tensors(false).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (name, t) in &a {
            let x = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let y = b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{arch:?} {name} differs"
            );
        }
        // Saving again over the same directory replaces it atomically.
        save_model(&back, &dir, None).unwrap();
        assert!(Transformer::load(&dir, DType::F32, &Device::Cpu).is_ok());
    }
    let (_, mut m) = model(Arch::Llama, false, DType::F32);
    m.attach_lora(&LoraConfig::default(), 5).unwrap();
    for (name, var) in m.trainable_vars() {
        if name.ends_with("lora_B.weight") {
            var.set(&(var.ones_like().unwrap() * 0.01).unwrap())
                .unwrap();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    save_model(&m, &tmp.path().join("merged"), None).unwrap();
    let merged = Transformer::load(&tmp.path().join("merged"), DType::F32, &Device::Cpu).unwrap();
    assert!(!merged.has_lora());
    let ids = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
    let x = m.logits(&ids, &[4]).unwrap();
    let y = merged.logits(&ids, &[4]).unwrap();
    assert!(common_model::max_abs_diff(&x, &y) < 1e-4);
}

#[test]
fn sharded_checkpoints_and_bf16_load() {
    let (_t, dir) = tiny_dir(Arch::Llama);
    let tensors = load_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let reference = Transformer::load(&dir, DType::F32, &Device::Cpu).unwrap();
    // Split into two bf16 shards with an index, as HF does for large models.
    let mut names: Vec<_> = tensors.keys().cloned().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let shard: std::collections::HashMap<_, _> = part
            .iter()
            .map(|n| (n.clone(), tensors[n].to_dtype(DType::BF16).unwrap()))
            .collect();
        save_file(&shard, &dir.join(&file)).unwrap();
        for n in part.iter() {
            map.insert(n.clone(), serde_json::json!(file));
        }
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let sharded = Transformer::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[3u32, 1, 4, 1, 5]], &Device::Cpu).unwrap();
    let d = common_model::max_abs_diff(
        &reference.logits(&ids, &[5]).unwrap(),
        &sharded.logits(&ids, &[5]).unwrap(),
    );
    assert!(
        d < 1e-2 && d > 0.0,
        "bf16 weights are close but not identical: {d}"
    );
    let as_bf16 = Transformer::load(&dir, DType::BF16, &Device::Cpu).unwrap();
    assert_eq!(as_bf16.dtype(), DType::BF16);
    assert!(as_bf16.logits(&ids, &[5]).is_ok());
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    // Unknown architecture.
    let (_t, dir) = tiny_dir(Arch::Llama);
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"llama\"", "\"gpt_neox\""),
    )
    .unwrap();
    let e = Transformer::load(&dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gpt_neox") && e.contains("llama, mistral, qwen2, qwen3"),
        "{e}"
    );

    // Missing tensor.
    let (_t, dir) = tiny_dir(Arch::Llama);
    let mut t = load_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    t.remove("model.layers.0.mlp.up_proj.weight");
    save_file(&t, &dir.join("model.safetensors")).unwrap();
    let e = Transformer::load(&dir, DType::F32, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "model.layers.0.mlp.up_proj.weight"),
        "{e}"
    );

    // Wrong shape: the message names the tensor and both shapes.
    let (_t, dir) = tiny_dir(Arch::Qwen2);
    let mut t = load_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    t.insert(
        "model.layers.0.self_attn.k_proj.bias".into(),
        Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap(),
    );
    save_file(&t, &dir.join("model.safetensors")).unwrap();
    let e = Transformer::load(&dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k_proj.bias") && e.contains("[7]") && e.contains("[8]"),
        "{e}"
    );

    // Truncated safetensors.
    let (_t, dir) = tiny_dir(Arch::Llama);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = Transformer::load(&dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    // Garbage header.
    std::fs::write(
        dir.join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header",
    )
    .unwrap();
    assert!(Transformer::load(&dir, DType::F32, &Device::Cpu).is_err());
    // No weights at all.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = Transformer::load(&dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no model.safetensors"), "{e}");
    // Missing config.
    let empty = tempfile::tempdir().unwrap();
    let e = Transformer::load(empty.path(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let (cfg, m) = model(Arch::Llama, true, DType::F32);
    let dev = Device::Cpu;
    let v = cfg.vocab_size as u32;
    // Token id >= vocab, in both paths.
    let ids = Tensor::new(&[[1u32, v]], &dev).unwrap();
    assert!(
        matches!(m.logits(&ids, &[2]), Err(ModelError::Input(msg)) if msg.contains(&v.to_string()))
    );
    let mut cache = KvCache::new(
        &cfg,
        CacheConfig {
            block_size: 4,
            num_blocks: 4,
        },
        DType::F32,
        &dev,
    )
    .unwrap();
    let mut s = cache.new_sequence();
    let bad = [v + 3];
    assert!(m
        .step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut s,
                tokens: &bad
            }],
            StepLogits::Last
        )
        .is_err());
    assert_eq!(s.len(), 0);
    assert_eq!(cache.free_blocks(), 3, "a failed step allocates nothing");
    // Empty inputs.
    assert!(m.step(&mut cache, &mut [], StepLogits::Last).is_err());
    assert!(m
        .step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut s,
                tokens: &[]
            }],
            StepLogits::Last
        )
        .is_err());
    assert!(m.score_tokens(&[]).is_err());
    let empty = Tensor::zeros((0, 0), DType::U32, &dev).unwrap();
    assert!(m.logits(&empty, &[]).is_err());
    // Lengths that do not fit the batch.
    let ids = Tensor::new(&[[1u32, 2, 3]], &dev).unwrap();
    assert!(m.logits(&ids, &[4]).is_err());
    assert!(m.logits(&ids, &[0]).is_err());
    assert!(m.logits(&ids, &[1, 2]).is_err());
    // Cache exhaustion is reported and leaves the cache unchanged.
    let long: Vec<u32> = (0..20).collect();
    let e = m
        .step(
            &mut cache,
            &mut [StepSeq {
                cache: &mut s,
                tokens: &long,
            }],
            StepLogits::Last,
        )
        .unwrap_err();
    assert!(
        matches!(e, ModelError::CacheFull { needed: 5, free: 3 }),
        "{e}"
    );
    assert_eq!(cache.free_blocks(), 3);
}

#[test]
fn weight_updates_are_validated_and_leave_the_old_model() {
    let (cfg, m) = model(Arch::Qwen2, false, DType::F32);
    let good = random_tensors(&cfg, 0.1, 99).unwrap();
    let ids = Tensor::new(&[[5u32, 6, 7]], &Device::Cpu).unwrap();
    let before = m.logits(&ids, &[3]).unwrap();
    let name = "model.layers.1.mlp.down_proj.weight";
    let mut nan = std::collections::HashMap::new();
    let mut v = good[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[3] = f32::NAN;
    nan.insert(
        name.to_string(),
        Tensor::from_vec(v, good[name].dims(), &Device::Cpu).unwrap(),
    );
    assert!(m
        .with_weights(nan)
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
    let mut unknown = std::collections::HashMap::new();
    unknown.insert(
        "model.layers.9.mlp.up_proj.weight".to_string(),
        good[name].clone(),
    );
    assert!(m
        .with_weights(unknown)
        .unwrap_err()
        .to_string()
        .contains("unknown tensor"));
    let mut wrong = std::collections::HashMap::new();
    wrong.insert(name.to_string(), good[name].t().unwrap());
    assert!(matches!(
        m.with_weights(wrong),
        Err(ModelError::ShapeMismatch { .. })
    ));
    assert!(common_model::max_abs_diff(&before, &m.logits(&ids, &[3]).unwrap()) == 0.0);
    let updated = m.with_weights(good.clone()).unwrap();
    let fresh = Transformer::from_tensors(cfg, good, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        common_model::max_abs_diff(
            &updated.logits(&ids, &[3]).unwrap(),
            &fresh.logits(&ids, &[3]).unwrap()
        ),
        0.0
    );
}
