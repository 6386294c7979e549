//! The training forward and backward are deterministic on CPU with several threads: the same
//! batch through the same weights gives bit-identical logprobs and gradients, run after run
//! (bit-exact resume depends on it).

mod common_model;

use candle_core::{DType, Device, Tensor};
use common_model::model;
use oxrl_models::{Arch, TrainForward};

#[test]
fn gradients_are_bit_identical_run_after_run() {
    for (arch, tie) in [
        (Arch::Llama, false),
        (Arch::Llama, true),
        (Arch::Qwen3, false),
    ] {
        check(arch, tie);
    }
}

fn check(arch: Arch, tie: bool) {
    let (_, m) = model(arch, tie, DType::F32);
    let vocab = m.config().vocab_size as u32;
    let (b, t) = (6usize, 23usize);
    let ids: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 37 + 11) % vocab).collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap();
    let lengths = vec![23, 20, 17, 23, 9, 14];
    let run = || {
        let out = m
            .token_logprobs(
                &ids,
                &lengths,
                TrainForward {
                    entropy: true,
                    ..TrainForward::default()
                },
            )
            .unwrap();
        let loss =
            (out.logprobs.sum_all().unwrap() + out.entropy.unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let mut all = Vec::new();
        for (name, v) in m.trainable_vars() {
            let g = grads.get(v.as_tensor()).unwrap();
            all.push((name, g.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
        }
        all
    };
    let first = run();
    for i in 0..20 {
        let again = run();
        for ((name, a), (_, b)) in first.iter().zip(&again) {
            assert!(
                a == b,
                "{arch:?} tie={tie} run {i}: gradient of {name} differs"
            );
        }
    }
}
