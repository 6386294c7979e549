//! The policy losses in f32 with candle autograd (the trainer's path) against the same functions
//! in f64 (the `oxrl loss` path) on golden inputs: a few cases of every loss family of TRL's
//! `grpo` and verl's `policy_loss` kinds; loss and gradient must agree to 1e-5 relative.

use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;

use oxrl_trainer::advantages::grpo::{
    group_normalized, groups_of_consecutive, GroupNormalization, GroupScale,
};
use oxrl_trainer::aggregation::AggregationNorm;
use oxrl_trainer::policy_loss::{
    policy_loss, PolicyLossConfig, PolicyLossExtras, TrlGrpoArgs, VerlActorArgs,
};

/// Cases taken per family.
const PER_FAMILY: usize = 3;

fn golden(file: &str) -> Value {
    let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("JSON")
}

fn tensor(v: &Value) -> Option<Tensor> {
    fn flat(v: &Value, out: &mut Vec<f64>, shape: &mut Vec<usize>, depth: usize) {
        match v {
            Value::Array(a) => {
                if shape.len() == depth {
                    shape.push(a.len());
                }
                for x in a {
                    flat(x, out, shape, depth + 1);
                }
            }
            Value::Number(n) => out.push(n.as_f64().unwrap()),
            Value::Bool(b) => out.push(if *b { 1.0 } else { 0.0 }),
            _ => panic!("not a number: {v}"),
        }
    }
    if v.is_null() {
        return None;
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    flat(v, &mut out, &mut shape, 0);
    Some(Tensor::from_vec(out, shape, &Device::Cpu).unwrap())
}

/// Inputs of one case in f64.
struct Inputs {
    logp: Tensor,
    old: Option<Tensor>,
    reference: Option<Tensor>,
    adv: Tensor,
    mask: Tensor,
    is_weights: Option<Tensor>,
    cfg: PolicyLossConfig,
    norm: AggregationNorm,
}

fn trl_inputs(c: &Value) -> Inputs {
    let cf = &c["config"];
    let f = |k: &str, d: f64| cf.get(k).and_then(Value::as_f64).unwrap_or(d);
    let s = |k: &str, d: &str| cf.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    let mut args = TrlGrpoArgs {
        loss_type: s("loss_type", "dapo"),
        epsilon: f("epsilon", 0.2),
        epsilon_high: cf.get("epsilon_high").and_then(Value::as_f64),
        delta: cf.get("delta").and_then(Value::as_f64),
        beta: f("beta", 0.0),
        importance_sampling_level: s("importance_sampling_level", "token"),
        use_bias_correction_kl: cf
            .get("use_bias_correction_kl")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_completion_length: f("max_completion_length", 512.0),
        ..TrlGrpoArgs::default()
    };
    args.sapo.pos = f("sapo_temperature_pos", args.sapo.pos);
    args.sapo.neg = f("sapo_temperature_neg", args.sapo.neg);
    let logp = tensor(&c["policy_logps"]).unwrap();
    let rows = logp.dim(0).unwrap();
    let adv = match c.get("advantages") {
        Some(a) => tensor(a).unwrap(),
        None => {
            let r = tensor(&c["rewards"]).unwrap();
            let g = c["num_generations"].as_u64().unwrap() as usize;
            let groups = groups_of_consecutive(rows, g).unwrap();
            group_normalized(&r, &groups, &GroupNormalization::trl(GroupScale::Group)).unwrap()
        }
    };
    Inputs {
        old: tensor(&c["old_logps"]),
        reference: c.get("ref_logps").and_then(tensor),
        mask: tensor(&c["completion_mask"]).unwrap(),
        adv,
        is_weights: None,
        cfg: args.config().unwrap(),
        norm: args.norm(
            rows,
            c.get("num_items_in_batch").and_then(Value::as_f64),
            1.0,
        ),
        logp,
    }
}

fn verl_inputs(c: &Value) -> Inputs {
    let cf = &c["config"];
    let mut args = VerlActorArgs {
        loss_mode: c["loss_mode"].as_str().unwrap().into(),
        loss_agg_mode: c["loss_agg_mode"].as_str().unwrap_or("token-mean").into(),
        clip_ratio: cf.get("clip_ratio").and_then(Value::as_f64).unwrap_or(0.2),
        clip_ratio_low: cf.get("clip_ratio_low").and_then(Value::as_f64),
        clip_ratio_high: cf.get("clip_ratio_high").and_then(Value::as_f64),
        clip_ratio_c: cf
            .get("clip_ratio_c")
            .and_then(Value::as_f64)
            .unwrap_or(3.0),
        ..VerlActorArgs::default()
    };
    if let Some(t) = cf.get("tau_pos").and_then(Value::as_f64) {
        args.sapo.pos = t;
    }
    if let Some(t) = cf.get("tau_neg").and_then(Value::as_f64) {
        args.sapo.neg = t;
    }
    if let Some(p) = cf.get("policy_loss") {
        let g = |k: &str, d: f64| p.get(k).and_then(Value::as_f64).unwrap_or(d);
        args.cov.clip_cov_ratio = g("clip_cov_ratio", args.cov.clip_cov_ratio);
        args.cov.clip_cov_lb = g("clip_cov_lb", args.cov.clip_cov_lb);
        args.cov.clip_cov_ub = g("clip_cov_ub", args.cov.clip_cov_ub);
        args.cov.kl_cov_ratio = g("kl_cov_ratio", args.cov.kl_cov_ratio);
        args.cov.ppo_kl_coef = g("ppo_kl_coef", args.cov.ppo_kl_coef);
    }
    let mut norm = AggregationNorm::default();
    if let Some(g) = cf.get("global_batch_info") {
        norm.dp_size = g.get("dp_size").and_then(Value::as_f64).unwrap_or(1.0);
        norm.num_tokens = g.get("batch_num_tokens").and_then(Value::as_f64);
        norm.num_sequences = g.get("global_batch_size").and_then(Value::as_f64);
        norm.length = g.get("loss_scale_factor").and_then(Value::as_f64);
    }
    Inputs {
        logp: tensor(&c["log_prob"]).unwrap(),
        old: tensor(&c["old_log_prob"]),
        reference: None,
        adv: tensor(&c["advantages"]).unwrap(),
        mask: tensor(&c["response_mask"]).unwrap(),
        is_weights: c.get("rollout_is_weights").and_then(tensor),
        cfg: args.config().unwrap(),
        norm,
    }
}

/// Loss and gradient (as f64 host values) with every input cast to `dtype`.
fn run(inp: &Inputs, dtype: DType) -> (f64, Vec<f64>) {
    let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
    let lp = Var::from_tensor(&cast(&inp.logp)).unwrap();
    let old = inp.old.as_ref().map(cast);
    let reference = inp.reference.as_ref().map(cast);
    let w = inp.is_weights.as_ref().map(cast);
    let extras = PolicyLossExtras {
        ref_logp: reference.as_ref(),
        is_weights: w.as_ref(),
        norm: inp.norm,
        ..Default::default()
    };
    let out = policy_loss(
        lp.as_tensor(),
        old.as_ref(),
        &cast(&inp.adv),
        &cast(&inp.mask),
        &inp.cfg,
        &extras,
    )
    .unwrap();
    assert_eq!(out.loss.dtype(), dtype);
    let grads = out.loss.backward().unwrap();
    let g = grads.get(lp.as_tensor()).unwrap();
    let g = g
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    (
        out.loss
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        g,
    )
}

/// |a − b| ≤ 1e-5 · max(|b|, scale) (+1e-12 for exact zeros): `scale` lets a value that is a
/// near-cancellation of larger terms be judged against those terms.
fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-5 * b.abs().max(scale) + 1e-12
}

fn check_family(cases: &[&Value], make: fn(&Value) -> Inputs) -> usize {
    let mut checked = 0;
    for c in cases.iter().take(PER_FAMILY) {
        let id = c["id"].as_str().unwrap();
        let inp = make(c);
        let (l64, g64) = run(&inp, DType::F64);
        let (l32, g32) = run(&inp, DType::F32);
        // The loss can be a near-cancellation (on-policy GRPO sums to ~0): judge it against the
        // size of its per-token terms, which ‖∂L/∂logp‖₁ measures.
        let l1: f64 = g64.iter().map(|x| x.abs()).sum();
        assert!(close(l32, l64, l1), "{id}: f32 loss {l32} vs f64 {l64}");
        for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
            assert!(close(*a, *b, 0.0), "{id}: grad[{i}] f32 {a} vs f64 {b}");
        }
        checked += 1;
    }
    checked
}

fn families(file: &str, kind: &str, key: fn(&Value) -> String) -> Vec<(String, Vec<Value>)> {
    let doc = golden(file);
    let mut fams: Vec<(String, Vec<Value>)> = Vec::new();
    for c in doc["cases"].as_array().unwrap() {
        if c["kind"] != kind {
            continue;
        }
        let k = key(c);
        match fams.iter_mut().find(|(n, _)| *n == k) {
            Some((_, v)) => v.push(c.clone()),
            None => fams.push((k, vec![c.clone()])),
        }
    }
    fams
}

#[test]
fn trl_grpo_losses_agree_in_f32() {
    let fams = families("trl_public.json", "grpo", |c| {
        c["config"]
            .get("loss_type")
            .and_then(Value::as_str)
            .unwrap_or("dapo")
            .to_string()
    });
    assert!(
        fams.len() >= 8,
        "expected every TRL loss type, got {}",
        fams.len()
    );
    for (name, cases) in &fams {
        let refs: Vec<&Value> = cases.iter().collect();
        let n = check_family(&refs, trl_inputs);
        eprintln!("grpo/{name}: {n} case(s) agree in f32");
    }
}

#[test]
fn verl_policy_losses_agree_in_f32() {
    let fams = families("verl_public.json", "policy_loss", |c| {
        c["loss_mode"].as_str().unwrap().to_string()
    });
    assert!(
        fams.len() >= 9,
        "expected every verl loss mode, got {}",
        fams.len()
    );
    for (name, cases) in &fams {
        let refs: Vec<&Value> = cases.iter().collect();
        let n = check_family(&refs, verl_inputs);
        eprintln!("policy_loss/{name}: {n} case(s) agree in f32");
    }
}
