//! The advantage estimators in f32 against the same functions in f64, on golden inputs: for every
//! estimator a few cases of `tests/golden/verl_public.json` (kind `adv`) and of `trl_public.json`
//! (kind `grpo_advantages`) are run through the library with f32 tensors and with f64 tensors; the
//! f32 results must keep the f32 dtype and agree with the f64 ones to 1e-5 relative (absolute
//! below magnitude 1). The f64 path is the one the golden test checks against the anchors.

use candle_core::{DType, Device, Tensor};
use oxrl_trainer::advantages::{
    compute_advantages, groups_of_consecutive, multi_reward_advantages, AdvantageEstimator,
    AdvantageInputs, AdvantageOptions, GroupScale, MultiRewardAggregation,
};
use serde_json::Value;

const CASES_PER_ESTIMATOR: usize = 3;

fn load(file: &str) -> Value {
    let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("JSON")
}

fn flat(v: &Value) -> (Vec<f64>, Vec<usize>) {
    fn rec(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => {
                if shape.len() == depth {
                    shape.push(a.len());
                }
                for x in a {
                    rec(x, depth + 1, shape, out);
                }
            }
            Value::Bool(b) => out.push(f64::from(u8::from(*b))),
            x => out.push(x.as_f64().expect("number")),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    rec(v, 0, &mut shape, &mut out);
    (out, shape)
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    let (data, shape) = flat(v);
    Tensor::from_vec(data, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("tensor")
}

fn group_ids(v: &Value) -> Vec<usize> {
    let mut seen: Vec<String> = Vec::new();
    v.as_array()
        .expect("index")
        .iter()
        .map(|x| {
            let k = x.to_string();
            seen.iter().position(|s| *s == k).unwrap_or_else(|| {
                seen.push(k);
                seen.len() - 1
            })
        })
        .collect()
}

fn assert_close(f32_out: &Tensor, f64_out: &Tensor, what: &str) {
    assert_eq!(f32_out.dtype(), DType::F32, "{what}: dtype");
    let a = f32_out
        .to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("f32 values");
    let b = f64_out
        .flatten_all()
        .and_then(|t| t.to_vec1::<f64>())
        .expect("f64 values");
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(1.0),
            "{what}[{k}]: f32 {x} vs f64 {y}"
        );
    }
}

fn options(case: &Value) -> AdvantageOptions {
    let mut o = AdvantageOptions::default();
    let p = &case["params"];
    let cfg = &p["config"];
    if let Some(g) = p["gamma"].as_f64().or(cfg["gamma"].as_f64()) {
        o.gamma = g;
    }
    if let Some(l) = p["lam"].as_f64().or(cfg["lam"].as_f64()) {
        o.lam = l;
    }
    if let Some(n) = p["norm_adv_by_std_in_grpo"]
        .as_bool()
        .or(cfg["norm_adv_by_std_in_grpo"].as_bool())
    {
        o.norm_adv_by_std = n;
    }
    o.handle_zero_tail = p["handle_zero_tail"].as_bool();
    o
}

fn run_verl(case: &Value, dtype: DType) -> (Tensor, Tensor) {
    let est = AdvantageEstimator::from_name(case["estimator"].as_str().expect("estimator"))
        .expect("known estimator");
    let opt = |k: &str| (!case[k].is_null()).then(|| tensor(&case[k], dtype));
    let rewards = tensor(&case["token_level_rewards"], dtype);
    let mask = tensor(&case["response_mask"], dtype);
    let groups = (!case["index"].is_null()).then(|| group_ids(&case["index"]));
    let (values, baselines) = (opt("values"), opt("reward_baselines"));
    let (old, spp, isw) = (
        opt("old_log_probs"),
        opt("sum_pi_squared"),
        opt("rollout_is_weights"),
    );
    let inputs = AdvantageInputs {
        groups: groups.as_deref(),
        values: values.as_ref(),
        reward_baselines: baselines.as_ref(),
        old_log_probs: old.as_ref(),
        sum_pi_squared: spp.as_ref(),
        rollout_is_weights: isw.as_ref(),
        ..AdvantageInputs::new(&rewards, &mask)
    };
    let out = compute_advantages(est, &inputs, &options(case)).expect("estimator runs");
    // Compare under the mask only (the golden convention; GAE's whitened advantages are not
    // multiplied by the mask).
    let m = mask.to_dtype(out.advantages.dtype()).expect("mask");
    (
        (&out.advantages * &m).expect("mul"),
        (&out.returns * &m).expect("mul"),
    )
}

#[test]
fn verl_estimators_f32_match_f64() {
    let doc = load("verl_public.json");
    let mut per_est: std::collections::BTreeMap<String, usize> = Default::default();
    for case in doc["cases"].as_array().expect("cases") {
        if case["kind"] != "adv" {
            continue;
        }
        let est = case["estimator"].as_str().expect("estimator").to_string();
        let n = per_est.entry(est).or_default();
        if *n >= CASES_PER_ESTIMATOR {
            continue;
        }
        *n += 1;
        let id = case["id"].as_str().unwrap_or("?");
        let (a32, g32) = run_verl(case, DType::F32);
        let (a64, g64) = run_verl(case, DType::F64);
        assert_close(&a32, &a64, &format!("{id} advantages"));
        assert_close(&g32, &g64, &format!("{id} returns"));
    }
    assert!(per_est.len() >= 13, "estimators covered: {per_est:?}");
}

#[test]
fn bnpo_f32_matches_f64() {
    // BNPO is oxrl's own: run it on the rewards of the verl grpo cases.
    let doc = load("verl_public.json");
    let mut done = 0;
    for case in doc["cases"].as_array().expect("cases") {
        if case["kind"] != "adv" || case["estimator"] != "grpo" || done >= CASES_PER_ESTIMATOR {
            continue;
        }
        done += 1;
        let run = |dtype| {
            let mut c = case.clone();
            c["estimator"] = "bnpo".into();
            run_verl(&c, dtype)
        };
        let ((a32, _), (a64, _)) = (run(DType::F32), run(DType::F64));
        assert_close(&a32, &a64, case["id"].as_str().unwrap_or("?"));
    }
    assert!(done > 0);
}

#[test]
fn trl_group_advantages_f32_match_f64() {
    let doc = load("trl_public.json");
    let mut per_kind: std::collections::BTreeMap<String, usize> = Default::default();
    for case in doc["cases"].as_array().expect("cases") {
        if case["kind"] != "grpo_advantages" {
            continue;
        }
        let cfg = &case["config"];
        let scale = cfg["scale_rewards"].as_str().unwrap_or("group");
        let agg = cfg["multi_objective_aggregation"]
            .as_str()
            .unwrap_or("sum_then_normalize");
        let n = per_kind.entry(format!("{scale}/{agg}")).or_default();
        if *n >= CASES_PER_ESTIMATOR {
            continue;
        }
        *n += 1;
        let run = |dtype| {
            let rewards = if case["rewards_per_func"].is_null() {
                tensor(&case["rewards"], dtype)
                    .unsqueeze(1)
                    .expect("unsqueeze")
            } else {
                tensor(&case["rewards_per_func"], dtype)
            };
            let weights: Option<Vec<f64>> = case["reward_weights"]
                .as_array()
                .map(|w| w.iter().map(|x| x.as_f64().expect("weight")).collect());
            let g = case["num_generations"].as_u64().expect("G") as usize;
            let groups = groups_of_consecutive(rewards.dim(0).expect("N"), g).expect("groups");
            multi_reward_advantages(
                &rewards,
                weights.as_deref(),
                &groups,
                GroupScale::from_trl_name(scale).expect("scale"),
                MultiRewardAggregation::from_name(agg).expect("aggregation"),
            )
            .expect("advantages")
        };
        assert_close(
            &run(DType::F32),
            &run(DType::F64),
            case["id"].as_str().unwrap_or("?"),
        );
    }
    assert_eq!(per_kind.len(), 6, "{per_kind:?}");
}
