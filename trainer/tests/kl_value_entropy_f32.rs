//! The aggregation, KL, value, entropy and KL-in-reward functions in f32 under candle autograd
//! (the trainer's path) give the same loss and gradient as the f64 path (`oxrl loss`'s) on the
//! golden verl inputs, to 1e-5 relative.
//!
//! Both paths see the golden inputs rounded to f32 once, so what is compared is the arithmetic of
//! the functions, not the rounding of inputs (δ = log π − log π_ref of nearby log-probs loses
//! digits to cancellation already when its inputs are rounded).

use candle_core::{DType, Tensor, Var};
use oxrl_trainer::aggregation::{aggregate, AggregationNorm, LossAggregation};
use oxrl_trainer::cases::CaseReader;
use oxrl_trainer::entropy::entropy_loss;
use oxrl_trainer::kl::reward::{apply_kl_penalty, compute_rewards};
use oxrl_trainer::kl::{kl_penalty, KlEstimator, KlPenalty};
use oxrl_trainer::value_loss::value_loss;
use serde_json::Value;

const REL: f64 = 1e-5;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/verl_public.json");
    let text = std::fs::read_to_string(path).expect("golden file");
    oxrl_trainer::cases::parse_lenient(&text).expect("golden JSON")
}

fn cases<'a>(doc: &'a Value, kind: &str) -> Vec<&'a serde_json::Map<String, Value>> {
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c.as_object().unwrap())
        .collect()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// |f32 − f64| ≤ 1e-5·|f64| + 1e-5·(1e-2 · the tensor's largest |f64|): relative, with a floor
/// for entries that are near zero only because of cancellation.
fn assert_close(what: &str, id: &str, f32_path: &Tensor, f64_path: &Tensor) {
    assert_close_abs(what, id, f32_path, f64_path, 0.0)
}

/// [`assert_close`] plus an absolute allowance `abs`.
fn assert_close_abs(what: &str, id: &str, f32_path: &Tensor, f64_path: &Tensor, abs: f64) {
    let (a, b) = (flat(f32_path), flat(f64_path));
    assert_eq!(a.len(), b.len(), "{id}: {what} length");
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let tol = REL * y.abs() + REL * 1e-2 * scale + abs + 1e-12;
        assert!(
            (x - y).abs() <= tol,
            "{id}: {what}[{i}] f32 {x} vs f64 {y} (|Δ| {:.3e} > {tol:.3e})",
            (x - y).abs()
        );
    }
}

/// The f64 tensor with each value rounded to the nearest f32.
fn rounded(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F32)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
}

/// Runs `f` on `x` as a differentiated Var in `dtype` (other inputs converted), returning the
/// output tensors and d(first output)/dx.
fn with_grad(
    x: &Tensor,
    dtype: DType,
    f: impl Fn(&Tensor) -> Vec<Tensor>,
) -> (Vec<Tensor>, Tensor) {
    let v = Var::from_tensor(&x.to_dtype(dtype).unwrap()).unwrap();
    let outs = f(v.as_tensor());
    let g = outs[0].backward().unwrap();
    let grad = g
        .get(&v)
        .cloned()
        .unwrap_or(v.as_tensor().zeros_like().unwrap());
    (outs, grad)
}

/// The loss (first output) and gradient to [`REL`]; further outputs (per-token values, metrics)
/// also within `extra_abs`, the f32 rounding of values like e^u − u − 1 that cancel per token.
fn both(
    id: &str,
    extra_abs: f64,
    x: &Tensor,
    inputs: &[&Tensor],
    f: impl Fn(&Tensor, &[Tensor]) -> Vec<Tensor>,
) {
    let x = &rounded(x);
    let run = |dtype: DType| {
        let ins: Vec<Tensor> = inputs
            .iter()
            .map(|t| rounded(t).to_dtype(dtype).unwrap())
            .collect();
        with_grad(x, dtype, |v| f(v, &ins))
    };
    let (o64, g64) = run(DType::F64);
    let (o32, g32) = run(DType::F32);
    for (k, (a, b)) in o32.iter().zip(&o64).enumerate() {
        assert_eq!(a.dtype(), DType::F32, "{id}: output {k} keeps f32");
        let abs = if k == 0 { 0.0 } else { extra_abs };
        assert_close_abs(&format!("output {k}"), id, a, b, abs);
    }
    assert_close("gradient", id, &g32, &g64);
}

#[test]
fn agg_loss_f32_matches_f64() {
    let doc = golden();
    let cs = cases(&doc, "agg_loss");
    assert_eq!(cs.len(), 24);
    for c in cs {
        let r = CaseReader::new(c, "");
        let id = c["id"].as_str().unwrap();
        let l = r.tensor("loss_mat", 2).unwrap();
        let m = r.tensor("loss_mask", 2).unwrap();
        let mode = LossAggregation::from_name(c["loss_agg_mode"].as_str().unwrap()).unwrap();
        let norm = AggregationNorm {
            num_tokens: c.get("batch_num_tokens").and_then(Value::as_f64),
            num_sequences: c.get("global_batch_size").and_then(Value::as_f64),
            length: c.get("loss_scale_factor").and_then(Value::as_f64),
            dp_size: c.get("dp_size").and_then(Value::as_f64).unwrap_or(1.0),
        };
        both(id, 0.0, &l, &[&m], |x, ins| {
            vec![aggregate(x, &ins[0], mode, &norm).unwrap()]
        });
    }
}

#[test]
fn kl_penalty_f32_matches_f64() {
    let doc = golden();
    let cs = cases(&doc, "kl_penalty");
    assert_eq!(cs.len(), 42);
    for c in cs {
        let r = CaseReader::new(c, "");
        let id = c["id"].as_str().unwrap();
        let lp = r.tensor("logprob", 2).unwrap();
        let rf = r.tensor("ref_logprob", 2).unwrap();
        let m = r.tensor("response_mask", 2).unwrap();
        let pen = KlPenalty::from_verl_name(c["kl_penalty"].as_str().unwrap()).unwrap();
        let mode = LossAggregation::from_name(c["loss_agg_mode"].as_str().unwrap()).unwrap();
        both(id, 1e-6, &lp, &[&rf, &m], |x, ins| {
            let kl = kl_penalty(x, &ins[0], pen).unwrap();
            let loss = aggregate(&kl, &ins[1], mode, &AggregationNorm::default()).unwrap();
            vec![loss, kl]
        });
    }
}

#[test]
fn value_loss_f32_matches_f64() {
    let doc = golden();
    let cs = cases(&doc, "value_loss");
    assert_eq!(cs.len(), 8);
    for c in cs {
        let r = CaseReader::new(c, "");
        let id = c["id"].as_str().unwrap();
        let vp = r.tensor("vpreds", 2).unwrap();
        let ret = r.tensor("returns", 2).unwrap();
        let old = r.tensor("values", 2).unwrap();
        let m = r.tensor("response_mask", 2).unwrap();
        let eps = c["cliprange_value"].as_f64().unwrap();
        let mode = LossAggregation::from_name(c["loss_agg_mode"].as_str().unwrap()).unwrap();
        both(id, 0.0, &vp, &[&ret, &old, &m], |x, ins| {
            let out = value_loss(
                x,
                &ins[0],
                &ins[1],
                &ins[2],
                eps,
                mode,
                &AggregationNorm::default(),
            )
            .unwrap();
            vec![out.loss, out.clipfrac]
        });
    }
}

#[test]
fn entropy_loss_f32_matches_f64() {
    let doc = golden();
    let cs = cases(&doc, "entropy_loss");
    assert_eq!(cs.len(), 4);
    for c in cs {
        let r = CaseReader::new(c, "");
        let id = c["id"].as_str().unwrap();
        let logits = r.tensor("logits", 3).unwrap();
        let m = r.tensor("response_mask", 2).unwrap();
        let mode = LossAggregation::from_name(c["loss_agg_mode"].as_str().unwrap()).unwrap();
        both(id, 1e-6, &logits, &[&m], |x, ins| {
            let out = entropy_loss(x, &ins[0], mode, &AggregationNorm::default()).unwrap();
            vec![out.loss, out.entropy]
        });
    }
}

#[test]
fn kl_in_reward_f32_matches_f64() {
    let doc = golden();
    let cs = cases(&doc, "compute_rewards");
    assert_eq!(cs.len(), 2);
    for c in cs {
        let r = CaseReader::new(c, "");
        let id = c["id"].as_str().unwrap();
        let s = rounded(&r.tensor("token_level_scores", 2).unwrap());
        let old = rounded(&r.tensor("old_log_prob", 2).unwrap());
        let rf = rounded(&r.tensor("ref_log_prob", 2).unwrap());
        let beta = c["kl_ratio"].as_f64().unwrap();
        let run = |dtype: DType| {
            let (s, old, rf) = (
                s.to_dtype(dtype).unwrap(),
                old.to_dtype(dtype).unwrap(),
                rf.to_dtype(dtype).unwrap(),
            );
            let plain = compute_rewards(&s, &old, &rf, beta).unwrap();
            let mask = s.ones_like().unwrap();
            let shaped = apply_kl_penalty(&s, &old, &rf, &mask, KlEstimator::K1, beta).unwrap();
            (plain, shaped.token_level_rewards, shaped.current_kl)
        };
        let (p64, a64, k64) = run(DType::F64);
        let (p32, a32, k32) = run(DType::F32);
        assert_close("compute_rewards", id, &p32, &p64);
        assert_close("apply_kl_penalty", id, &a32, &a64);
        // with a full mask and k1, both are the same rewards
        assert_close("k1 with a full mask = compute_rewards", id, &a64, &p64);
        assert!(
            (k32 - k64).abs() <= REL * k64.abs() + 1e-7,
            "{id}: {k32} vs {k64}"
        );
    }
}
