//! Packed training rows (SFT packing): several sequences back to back in one row, each restarting
//! at position 0 and attending to itself only, give every sequence the per-token logprobs,
//! entropies and parameter gradients of the padded forward over the sequences one per row.

mod common_model;

use candle_core::{DType, Device, IndexOp, Tensor};
use common_model::{max_diff, model};
use oxrl_models::{Arch, LogitChunks, TrainForward, Transformer};

fn toks(seed: u32, len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 37 + seed * 11 + 5) % vocab)
        .collect()
}

/// `Σ c_j · logprob_j + Σ d_j · entropy_j` over one sequence's tokens 1.. (fixed coefficients).
fn weighted(lp: &Tensor, ent: &Tensor, seed: usize) -> Tensor {
    let n = lp.dims1().unwrap();
    let c: Vec<f64> = (0..n)
        .map(|j| ((seed * 5 + j * 3) as f64 * 0.7).sin() + 0.3)
        .collect();
    let c = Tensor::from_vec(c, n, &Device::Cpu)
        .unwrap()
        .to_dtype(lp.dtype())
        .unwrap();
    ((lp * &c).unwrap().sum_all().unwrap() + (ent * &c).unwrap().sum_all().unwrap()).unwrap()
}

fn check(m: &Transformer, label: &str, tol: f64) {
    let vocab = m.config().vocab_size as u32;
    let seqs: Vec<Vec<u32>> = [7usize, 3, 9, 1, 5, 4]
        .iter()
        .enumerate()
        .map(|(i, &l)| toks(i as u32 + 1, l, vocab))
        .collect();
    let opts = TrainForward {
        entropy: true,
        temperature: 0.8,
        logit_chunks: LogitChunks::Auto,
        ..TrainForward::default()
    };
    // Padded: one sequence per row.
    let t = seqs.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    for s in &seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(0u32, t - s.len()));
    }
    let ids = Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu).unwrap();
    let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let plain = m.token_logprobs(&ids, &lens, opts).unwrap();
    // Packed: rows [0, 1] (10 tokens), [2] (9), [3, 4, 5] (10), width 11 (one padded slot).
    let rows: [&[usize]; 3] = [&[0, 1], &[2], &[3, 4, 5]];
    let width = 11;
    let mut pids = Vec::new();
    let mut segments = Vec::new();
    for r in rows {
        let mut n = 0;
        for &i in r {
            pids.extend_from_slice(&seqs[i]);
            n += seqs[i].len();
        }
        pids.extend(std::iter::repeat_n(0u32, width - n));
        segments.push(r.iter().map(|&i| seqs[i].len()).collect::<Vec<_>>());
    }
    let pids = Tensor::from_vec(pids, (rows.len(), width), &Device::Cpu).unwrap();
    let packed = m.packed_token_logprobs(&pids, &segments, opts).unwrap();
    let (pe, ue) = (
        packed.entropy.as_ref().unwrap(),
        plain.entropy.as_ref().unwrap(),
    );
    let mut value = 0f64;
    let (mut lp_loss, mut lu_loss) = (None::<Tensor>, None::<Tensor>);
    for (r, row) in rows.iter().enumerate() {
        let mut at = 0;
        for &i in row.iter() {
            let len = seqs[i].len();
            // The first token of a packed sequence gets 0, as position 0 of a padded row.
            assert_eq!(
                packed
                    .logprobs
                    .i((r, at))
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0
            );
            let (a, b) = (
                packed.logprobs.i(r).unwrap().narrow(0, at, len).unwrap(),
                plain.logprobs.i(i).unwrap().narrow(0, 0, len).unwrap(),
            );
            let (ea, eb) = (
                pe.i(r).unwrap().narrow(0, at, len).unwrap(),
                ue.i(i).unwrap().narrow(0, 0, len).unwrap(),
            );
            value = value.max(max_diff(&a, &b)).max(max_diff(&ea, &eb));
            let (wa, wb) = (weighted(&a, &ea, i), weighted(&b, &eb, i));
            lp_loss = Some(lp_loss.map_or(wa.clone(), |x| (x + &wa).unwrap()));
            lu_loss = Some(lu_loss.map_or(wb.clone(), |x| (x + &wb).unwrap()));
            at += len;
        }
    }
    let (gp, gu) = (
        lp_loss.unwrap().backward().unwrap(),
        lu_loss.unwrap().backward().unwrap(),
    );
    let mut grad = 0f64;
    for (name, var) in m.trainable_vars() {
        let a = gu.get(var.as_tensor()).unwrap();
        let b = gp
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{label}: {name} got no gradient (packed)"));
        let scale = max_diff(a, &a.zeros_like().unwrap()).max(1.0);
        assert!(
            max_diff(b, &b.zeros_like().unwrap()) > 0.0,
            "{label}: {name} zero gradient"
        );
        grad = grad.max(max_diff(a, b) / scale);
    }
    eprintln!("{label}: packed vs padded: values {value:e}, gradients {grad:e}");
    assert!(
        value <= tol && grad <= tol,
        "{label}: values {value}, gradients {grad}"
    );
}

#[test]
fn packed_rows_equal_one_sequence_per_row() {
    for (arch, tie) in [
        (Arch::Llama, true),
        (Arch::Qwen3, false),
        (Arch::Mistral, false),
    ] {
        let (_, m) = model(arch, tie, DType::F32);
        check(&m, &format!("{arch:?}"), 1e-5);
    }
    let (_, m) = model(Arch::Qwen2, false, DType::F64);
    check(&m, "Qwen2 f64", 1e-11);
}

/// The composed path (bf16: additive block-diagonal mask, composed per-row RoPE).
#[test]
fn packed_rows_composed_path_in_bf16() {
    let (cfg, m) = model(Arch::Llama, false, DType::BF16);
    let vocab = cfg.vocab_size as u32;
    let (a, b) = (toks(1, 6, vocab), toks(2, 4, vocab));
    let o = TrainForward {
        track: false,
        ..TrainForward::default()
    };
    let packed = m
        .packed_token_logprobs(
            &Tensor::from_vec([a.clone(), b.clone()].concat(), (1, 10), &Device::Cpu).unwrap(),
            &[vec![6, 4]],
            o,
        )
        .unwrap()
        .logprobs;
    let alone = |s: &[u32]| {
        m.token_logprobs(
            &Tensor::from_vec(s.to_vec(), (1, s.len()), &Device::Cpu).unwrap(),
            &[s.len()],
            o,
        )
        .unwrap()
        .logprobs
        .i(0)
        .unwrap()
    };
    let worst = max_diff(&packed.i(0).unwrap().narrow(0, 0, 6).unwrap(), &alone(&a)).max(max_diff(
        &packed.i(0).unwrap().narrow(0, 6, 4).unwrap(),
        &alone(&b),
    ));
    eprintln!("bf16 packed vs alone: {worst}");
    assert!(worst <= 0.05, "{worst}");
}

#[test]
fn bad_packings_are_errors() {
    let (_, m) = model(Arch::Llama, true, DType::F32);
    let ids = Tensor::from_vec(vec![1u32, 2, 3, 4], (1, 4), &Device::Cpu).unwrap();
    let o = TrainForward::default();
    assert!(m.packed_token_logprobs(&ids, &[vec![3, 2]], o).is_err());
    assert!(m.packed_token_logprobs(&ids, &[vec![2, 0, 2]], o).is_err());
    assert!(m
        .packed_token_logprobs(&ids, &[vec![], vec![1]], o)
        .is_err());
}
