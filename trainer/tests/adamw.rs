//! oxrl's AdamW against `torch.optim.AdamW` on the trajectory recorded by
//! `scripts/adamw_reference.py` (`tests/fixtures/adamw_torch.json`): 20 steps with weight decay,
//! three groups (decay, no decay, norm at half lr), global grad-norm clipping and a
//! cosine-with-warmup schedule. f32 parameters (f32 state, as the trainer runs) are checked
//! against torch's float32 run and f64 parameters against its float64 run, every value of every
//! step within 1e-6 absolute (all values are O(0.1–1), so that is a few f32 ulps; a misplaced eps
//! or bias correction moves them by far more). Then save → load → continue must be bit-identical
//! to running straight through, for f32 and for bf16 parameters (whose f32 masters are state).

use candle_core::{backprop::GradStore, DType, Device, Tensor, Var};
use oxrl_trainer::optim::{
    clip_grad_norm, AdamW, AdamWConfig, GroupRule, LrSchedule, OptimError, ScheduleConfig,
    ScheduleKind,
};
use serde_json::Value;

struct Fixture {
    doc: Value,
}

impl Fixture {
    fn load() -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/adamw_torch.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        Self {
            doc: serde_json::from_str(&text).expect("fixture JSON"),
        }
    }
    fn cfg(&self, key: &str) -> f64 {
        self.doc["config"][key].as_f64().unwrap()
    }
    fn steps(&self) -> usize {
        self.doc["config"]["steps"].as_u64().unwrap() as usize
    }
    /// `(name, shape, group, init)` per parameter.
    fn params(&self) -> Vec<(String, Vec<usize>, String, Vec<f64>)> {
        self.doc["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize)
                        .collect(),
                    p["group"].as_str().unwrap().to_string(),
                    nums(&p["init"]),
                )
            })
            .collect()
    }
    fn adamw_config(&self) -> AdamWConfig {
        let betas = nums(&self.doc["config"]["betas"]);
        AdamWConfig {
            lr: self.cfg("peak_lr"),
            betas: (betas[0], betas[1]),
            eps: self.cfg("eps"),
            weight_decay: self.cfg("weight_decay"),
            groups: vec![GroupRule {
                patterns: vec!["*norm*.weight".into()],
                lr_scale: self.cfg("norm_lr_scale"),
                weight_decay: None,
            }],
            ..Default::default()
        }
    }
    fn schedule(&self) -> LrSchedule {
        let cfg: ScheduleConfig =
            serde_json::from_value(self.doc["config"]["schedule"].clone()).unwrap();
        assert_eq!(cfg.kind, ScheduleKind::Cosine);
        LrSchedule::new(&cfg, self.cfg("peak_lr"), self.steps() as u64).unwrap()
    }
    fn grad(&self, step: usize, name: &str) -> Option<Vec<f64>> {
        let g = &self.doc["grads"][step][name];
        (!g.is_null()).then(|| nums(g))
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tensor(values: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn values(v: &Var) -> Vec<f64> {
    v.as_tensor()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn bits(v: &Var) -> Vec<u32> {
    v.as_tensor()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Fresh parameters at the fixture's initial values.
fn init_vars(fx: &Fixture, dtype: DType) -> Vec<(String, Var)> {
    fx.params()
        .into_iter()
        .map(|(name, shape, _, init)| {
            (
                name,
                Var::from_tensor(&tensor(&init, &shape, dtype)).unwrap(),
            )
        })
        .collect()
}

/// One training step of the fixture: clip, then step at the scheduled lr. Returns the norm.
fn train_step(fx: &Fixture, opt: &mut AdamW, vars: &[(String, Var)], s: usize) -> f64 {
    let mut grads = GradStore::default();
    for (name, var) in vars {
        if let Some(g) = fx.grad(s, name) {
            grads.insert(var.as_tensor(), tensor(&g, var.dims(), var.dtype()));
        }
    }
    let norm = clip_grad_norm(opt.vars(), &mut grads, fx.cfg("max_norm")).unwrap();
    let lr = fx.schedule().lr_at(opt.step_count());
    opt.step(&grads, lr).unwrap();
    norm
}

/// Replays the fixture in `dtype` against torch's run `key`; returns the largest |Δparam|.
fn replay(dtype: DType, key: &str) -> f64 {
    let fx = Fixture::load();
    let vars = init_vars(&fx, dtype);
    let mut opt = AdamW::new(vars.clone(), fx.adamw_config()).unwrap();
    // The groups are the ones torch was given.
    for (info, (name, _, group, _)) in opt.param_info().iter().zip(fx.params()) {
        assert_eq!(info.name, name);
        let (wd, scale) = match group.as_str() {
            "decay" => (fx.cfg("weight_decay"), 1.0),
            "no_decay" => (0.0, 1.0),
            "norm" => (0.0, fx.cfg("norm_lr_scale")),
            other => panic!("group {other}"),
        };
        assert_eq!((info.weight_decay, info.lr_scale), (wd, scale), "{name}");
    }
    let run = &fx.doc[key];
    let mut worst = 0.0f64;
    for s in 0..fx.steps() {
        let lr_torch = fx.doc["lr"][s].as_f64().unwrap();
        let lr = fx.schedule().lr_at(s as u64);
        assert!(
            (lr - lr_torch).abs() <= 1e-15 * lr_torch.abs(),
            "lr at {s}: {lr} vs {lr_torch}"
        );

        let norm = train_step(&fx, &mut opt, &vars, s);
        let norm_torch = run["grad_norm"][s].as_f64().unwrap();
        assert!(
            (norm - norm_torch).abs() <= 1e-6 * norm_torch,
            "{key} step {s}: grad norm {norm} vs torch {norm_torch}"
        );
        for (name, var) in &vars {
            let want = nums(&run["params"][s][name]);
            for (i, (a, b)) in values(var).iter().zip(&want).enumerate() {
                let d = (a - b).abs();
                worst = worst.max(d);
                assert!(
                    d <= 1e-6,
                    "{key} step {s}: {name}[{i}] = {a}, torch {b} (|Δ| {d:e})"
                );
            }
        }
    }
    let info = opt.param_info();
    assert_eq!(info[0].name, "model.embed_tokens.weight");
    assert_eq!(
        info[0].step,
        fx.steps() as u64 - 2,
        "two steps without a gradient"
    );
    worst
}

#[test]
fn f32_params_match_torch_float32() {
    let worst = replay(DType::F32, "f32");
    eprintln!("f32 vs torch float32: max |Δparam| = {worst:e}");
}

#[test]
fn f64_params_match_torch_float64() {
    let worst = replay(DType::F64, "f64");
    eprintln!("f64 vs torch float64: max |Δparam| = {worst:e}");
    // In f64 the two implementations agree to rounding; 1e-6 would hide nothing here.
    assert!(worst < 1e-12, "f64 max |Δparam| {worst:e}");
}

/// Runs the fixture straight through, and again stopping after `split` steps: save, build a new
/// optimizer over copies of the parameters, load, continue. Both must agree bit for bit.
fn resume_is_bit_identical(dtype: DType) {
    let fx = Fixture::load();
    let dir = tempfile::tempdir().unwrap();
    let split = 10;

    let straight = init_vars(&fx, dtype);
    let mut opt = AdamW::new(straight.clone(), fx.adamw_config()).unwrap();
    for s in 0..fx.steps() {
        train_step(&fx, &mut opt, &straight, s);
    }
    opt.save(dir.path().join("straight.safetensors")).unwrap();

    let first = init_vars(&fx, dtype);
    let mut opt1 = AdamW::new(first.clone(), fx.adamw_config()).unwrap();
    for s in 0..split {
        train_step(&fx, &mut opt1, &first, s);
    }
    let path = dir.path().join("split.safetensors");
    opt1.save(&path).unwrap();
    drop(opt1);

    // A new process: parameters restored from a (bit-exact) checkpoint, a new optimizer.
    let second: Vec<(String, Var)> = first
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap(),
            )
        })
        .collect();
    let mut opt2 = AdamW::new(second.clone(), fx.adamw_config()).unwrap();
    opt2.load(&path).unwrap();
    assert_eq!(opt2.step_count(), split as u64);
    for s in split..fx.steps() {
        train_step(&fx, &mut opt2, &second, s);
    }
    for ((name, a), (_, b)) in straight.iter().zip(&second) {
        assert_eq!(a.dtype(), dtype);
        assert_eq!(bits(a), bits(b), "{dtype:?} {name} differs after resume");
    }
    let resumed = dir.path().join("resumed.safetensors");
    opt2.save(&resumed).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("straight.safetensors")).unwrap(),
        std::fs::read(&resumed).unwrap(),
        "{dtype:?}: the final optimizer states differ"
    );
}

#[test]
fn resume_is_bit_identical_f32() {
    resume_is_bit_identical(DType::F32);
}

#[test]
fn resume_is_bit_identical_bf16() {
    resume_is_bit_identical(DType::BF16);
}

#[test]
fn bf16_masters_follow_the_f32_run() {
    // With the same (f32-exact) gradients, a bf16 parameter's f32 master takes exactly the f32
    // run's path; the bf16 parameter is that master rounded.
    let fx = Fixture::load();
    let v32 = init_vars(&fx, DType::F32);
    let v16 = init_vars(&fx, DType::BF16);
    let mut o32 = AdamW::new(v32.clone(), fx.adamw_config()).unwrap();
    let mut o16 = AdamW::new(v16.clone(), fx.adamw_config()).unwrap();
    for s in 0..fx.steps() {
        // Feed both the f32 gradients (the bf16 run's store gets them in f32: any float dtype
        // is accepted and widened).
        let mut g32 = GradStore::default();
        let mut g16 = GradStore::default();
        for ((name, a), (_, b)) in v32.iter().zip(&v16) {
            if let Some(g) = fx.grad(s, name) {
                g32.insert(a.as_tensor(), tensor(&g, a.dims(), DType::F32));
                g16.insert(b.as_tensor(), tensor(&g, b.dims(), DType::F32));
            }
        }
        // The bf16 initial values are rounded, so only the update path is compared: feed the
        // f32 run from the same rounded start.
        if s == 0 {
            for ((_, a), (_, b)) in v32.iter().zip(&v16) {
                a.set(&b.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
            }
        }
        let n32 = clip_grad_norm(o32.vars(), &mut g32, 1.0).unwrap();
        let n16 = clip_grad_norm(o16.vars(), &mut g16, 1.0).unwrap();
        assert_eq!(n32, n16);
        let lr = fx.schedule().lr_at(s as u64);
        o32.step(&g32, lr).unwrap();
        o16.step(&g16, lr).unwrap();
        for ((name, a), (_, b)) in v32.iter().zip(&v16) {
            let rounded: Vec<u32> = a
                .as_tensor()
                .to_dtype(DType::BF16)
                .map(|t| Var::from_tensor(&t).unwrap())
                .map(|v| bits(&v))
                .unwrap();
            assert_eq!(rounded, bits(b), "step {s}: {name}");
        }
    }
}

#[test]
fn load_rejects_a_state_for_other_parameters() {
    let fx = Fixture::load();
    let dir = tempfile::tempdir().unwrap();
    let vars = init_vars(&fx, DType::F32);
    let mut opt = AdamW::new(vars.clone(), fx.adamw_config()).unwrap();
    train_step(&fx, &mut opt, &vars, 0);
    let path = dir.path().join("state.safetensors");
    opt.save(&path).unwrap();

    // Fewer parameters.
    let fewer: Vec<(String, Var)> = vars[1..].to_vec();
    let mut other = AdamW::new(fewer, fx.adamw_config()).unwrap();
    let err = other.load(&path).unwrap_err();
    assert!(
        matches!(&err, OptimError::State { msg, .. } if msg.contains("model.embed_tokens.weight")),
        "{err}"
    );
    assert_eq!(other.step_count(), 0, "a failed load changes nothing");

    // Same names, other dtype (f64 state does not fit f32 moments).
    let v64 = init_vars(&fx, DType::F64);
    let mut other = AdamW::new(v64, fx.adamw_config()).unwrap();
    assert!(matches!(other.load(&path), Err(OptimError::State { .. })));

    // Not a state file.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    assert!(matches!(opt.load(&junk), Err(OptimError::State { .. })));
    assert!(matches!(
        opt.load(dir.path().join("missing")),
        Err(OptimError::Io { .. })
    ));
}
