//! The fused kernels of `ops` against the composed candle ops, in value and gradient.
use super::*;
use candle_core::{Device, Var, D};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    let mut g = crate::init::SeededNormal::new(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        (0..n).map(|_| g.normal()).collect::<Vec<f64>>(),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

fn close(a: &Tensor, b: &Tensor, tol: f64) {
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(d <= tol, "max diff {d}");
}

/// Fused op and composed reference agree in value and in gradient (for a random cotangent).
fn check(fused: impl Fn(&Tensor) -> Tensor, reference: impl Fn(&Tensor) -> Tensor, x: Tensor) {
    let v = Var::from_tensor(&x).unwrap();
    let (yf, yr) = (fused(v.as_tensor()), reference(v.as_tensor()));
    close(&yf, &yr, 1e-12);
    let cot = rand(yf.dims(), 99);
    let gf = (yf * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (yr * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    close(
        gf.get(v.as_tensor()).unwrap(),
        gr.get(v.as_tensor()).unwrap(),
        1e-12,
    );
}

#[test]
fn masked_softmax_matches_composed() {
    let lengths = [5usize, 3];
    let mut mask = vec![0f64; 2 * 5 * 5];
    for (b, &len) in lengths.iter().enumerate() {
        for i in 0..5 {
            for j in 0..5 {
                if !(j < len && (j <= i || i >= len)) {
                    mask[(b * 5 + i) * 5 + j] = f64::NEG_INFINITY;
                }
            }
        }
    }
    let mask = Tensor::from_vec(mask, (2, 1, 1, 5, 5), &Device::Cpu).unwrap();
    check(
        |x| masked_softmax(x, &lengths, 0.7).unwrap(),
        |x| {
            candle_nn::ops::softmax(&(x * 0.7).unwrap().broadcast_add(&mask).unwrap(), D::Minus1)
                .unwrap()
        },
        rand(&[2, 2, 3, 5, 5], 1),
    );
}

/// SEED-MECHANISMS §8's worked example: toy one-dimensional attention (score q·k, no scaling)
/// over prefix keys [0.5, −1.0] / values [1, 2] plus each suffix token's own key.
#[test]
fn offset_mask_is_the_prefix_grouper_mask() {
    // Two suffixes of one token each: keys [prefix ; own], queries at position 2.
    let scores = Tensor::new(
        &[[0.5f64, -1.0, 0.2], [1.0 * 2.0 * 0.5, -2.0, 0.0]],
        &Device::Cpu,
    )
    .unwrap()
    .reshape((2, 1, 1, 3))
    .unwrap();
    let p = masked_softmax_offset(&scores, &[3, 3], 1.0, 2).unwrap();
    let v = Tensor::new(&[[1f64, 2.0, 3.0], [1.0, 2.0, -1.0]], &Device::Cpu).unwrap();
    let out = (p.reshape((2, 3)).unwrap() * v)
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert!((out[0] - 1.868030).abs() < 1e-6, "{}", out[0]);
    assert!((out[1] - 0.516126).abs() < 1e-6, "{}", out[1]);
    // The leaky layout (suffix 2 also sees suffix 1's key) differs: 1.209334.
    let leaky = Tensor::new(&[1.0f64, -2.0, 0.4, 0.0], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 4))
        .unwrap();
    let p = masked_softmax_offset(&leaky, &[4], 1.0, 3).unwrap();
    let v = Tensor::new(&[1f64, 2.0, 3.0, -1.0], &Device::Cpu).unwrap();
    let o = (p.flatten_all().unwrap() * v)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((o - 1.209334).abs() < 1e-6, "{o}");
    // A query at offset 1 of 3 keys sees only keys 0..=1.
    let s = Tensor::new(&[0.3f64, 0.1, 5.0], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3))
        .unwrap();
    let p = masked_softmax_offset(&s, &[3], 1.0, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(p[2], 0.0);
}

/// Left-padded rows: keys before a row's start get probability 0; a query inside the window sees
/// `start..=i`, one before it (padding) sees every real key. Hand-computed values.
#[test]
fn window_mask_skips_left_padding() {
    // One row, 3 queries over 4 keys, start 1, length 4; scores all equal except key 0 (huge,
    // so any leak through the padding shows).
    let row = [9.0f64, 0.0, 0.0, 0.0];
    let scores = Tensor::new(&[row, row, row], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 4))
        .unwrap();
    let p = masked_softmax_window(&scores, &[1], &[4], 1.0, 0)
        .unwrap()
        .reshape((3, 4))
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    // Query 0 is padding (before the start): keys 1..4, 1/3 each.
    assert_eq!(p[0][0], 0.0);
    for &pj in &p[0][1..] {
        assert!((pj - 1.0 / 3.0).abs() < 1e-15);
    }
    // Query 1 sees key 1 only; query 2 keys 1..=2.
    assert_eq!(p[1], vec![0.0, 1.0, 0.0, 0.0]);
    assert_eq!(p[2], vec![0.0, 0.5, 0.5, 0.0]);
    // Backward stays inside the window: the gradient of Σ p·c w.r.t. key 0 is 0.
    let v = Var::from_tensor(&scores).unwrap();
    let c = Tensor::new(&[1.0f64, 2.0, 3.0, 4.0], &Device::Cpu).unwrap();
    let loss = masked_softmax_window(v.as_tensor(), &[1], &[4], 1.0, 0)
        .unwrap()
        .broadcast_mul(&c)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = loss.backward().unwrap();
    let g = g
        .get(v.as_tensor())
        .unwrap()
        .reshape((3, 4))
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    // Query 2: p = (½, ½) over keys 1, 2 with c = (2, 3): dL/ds = p·(c − 2.5) = (−¼, ¼).
    assert_eq!(g[2], vec![0.0, -0.25, 0.25, 0.0]);
    assert!(g.iter().all(|r| r[0] == 0.0));
    // A window with no real key is an error, not an empty softmax.
    assert!(masked_softmax_window(&scores, &[4], &[4], 1.0, 0).is_err());
}

/// Per-row angle tables: each batch row rotated at its own positions equals [`rope`] of that
/// row alone, in value and gradient.
#[test]
fn rope_per_row_equals_rope_of_each_row() {
    let (h, t, d) = (2usize, 3usize, 4usize);
    let x = Var::from_tensor(&rand(&[2, h, t, d], 41)).unwrap();
    let angles = |p0: usize| -> (Vec<f64>, Vec<f64>) {
        let mut c = Vec::new();
        let mut s = Vec::new();
        for p in p0..p0 + t {
            for f in [1.0f64, 0.1] {
                c.push((p as f64 * f).cos());
                s.push((p as f64 * f).sin());
            }
        }
        (c, s)
    };
    let ((c0, s0), (c1, s1)) = (angles(0), angles(5));
    let both = |a: &[f64], b: &[f64]| Arc::new([a, b].concat());
    let y = rope_per_row(x.as_tensor(), both(&c0, &c1), both(&s0, &s1), t).unwrap();
    let row = |i: usize, c: &[f64], s: &[f64]| {
        rope(
            &x.as_tensor().narrow(0, i, 1).unwrap(),
            Arc::new(c.to_vec()),
            Arc::new(s.to_vec()),
            t,
        )
        .unwrap()
    };
    let y_ref = Tensor::cat(&[row(0, &c0, &s0), row(1, &c1, &s1)], 0).unwrap();
    close(&y, &y_ref, 0.0);
    let w = rand(&[2, h, t, d], 42);
    let g = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g_ref = (y_ref * &w).unwrap().sum_all().unwrap().backward().unwrap();
    close(
        g.get(x.as_tensor()).unwrap(),
        g_ref.get(x.as_tensor()).unwrap(),
        0.0,
    );
}

#[test]
fn logprob_and_entropy_match_composed() {
    let targets = [3u32, 0, 6, 2];
    let t = Tensor::new(&targets, &Device::Cpu)
        .unwrap()
        .unsqueeze(1)
        .unwrap();
    check(
        |x| target_logprob(x, &targets).unwrap(),
        |x| {
            candle_nn::ops::log_softmax(x, 1)
                .unwrap()
                .gather(&t, 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
        },
        rand(&[4, 7], 2),
    );
    check(
        |x| entropy(x).unwrap(),
        |x| {
            let lp = candle_nn::ops::log_softmax(x, 1).unwrap();
            (lp.exp().unwrap() * lp)
                .unwrap()
                .sum(1)
                .unwrap()
                .neg()
                .unwrap()
        },
        rand(&[4, 7], 3),
    );
}

/// A vocabulary-wide f32 row whose terms each fall below half an ulp of the running sum: summed
/// in f32 they would all be dropped (log-sum-exp off by 2e-3); accumulated in f64 the logprob and
/// the entropy are within f32 rounding of the closed form.
#[test]
fn wide_f32_rows_keep_their_small_terms() {
    let (v, low) = (49_152usize, -17.0f64);
    let mut row = vec![low as f32; v];
    row[0] = 0.0;
    let x = Tensor::from_vec(row, (1, v), &Device::Cpu).unwrap();
    let tail = (v - 1) as f64 * low.exp();
    let lse = (1.0 + tail).ln();
    let lp = target_logprob(&x, &[0]).unwrap().to_vec1::<f32>().unwrap()[0] as f64;
    assert!((lp + lse).abs() < 1e-6, "logprob {lp} vs {}", -lse);
    let p0 = (-lse).exp();
    let pt = (low - lse).exp();
    let want_h = -(p0 * -lse + (v - 1) as f64 * pt * (low - lse));
    let h = entropy(&x).unwrap().to_vec1::<f32>().unwrap()[0] as f64;
    assert!(
        (h - want_h).abs() < 1e-5 * want_h,
        "entropy {h} vs {want_h}"
    );
}

#[test]
fn rms_norm_matches_composed_for_input_and_weight() {
    let x = rand(&[3, 4, 6], 4);
    let w = Var::from_tensor(&(rand(&[6], 5) + 1.0).unwrap()).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let yf = rms_norm(xv.as_tensor(), w.as_tensor(), 1e-6).unwrap();
    let yr = crate::layers::rms_norm_composed(xv.as_tensor(), w.as_tensor(), 1e-6).unwrap();
    close(&yf, &yr, 1e-12);
    let cot = rand(&[3, 4, 6], 6);
    let gf = (yf * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (yr * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    close(
        gf.get(xv.as_tensor()).unwrap(),
        gr.get(xv.as_tensor()).unwrap(),
        1e-12,
    );
    close(
        gf.get(w.as_tensor()).unwrap(),
        gr.get(w.as_tensor()).unwrap(),
        1e-12,
    );
}

#[test]
fn rope_matches_rope_slow() {
    let (t, d) = (5, 8);
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for p in 0..t {
        for i in 0..d / 2 {
            let a = p as f64 * 0.3f64.powi(i as i32);
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let ct = Tensor::from_vec(cos.clone(), (t, d / 2), &Device::Cpu).unwrap();
    let st = Tensor::from_vec(sin.clone(), (t, d / 2), &Device::Cpu).unwrap();
    let (cos, sin) = (Arc::new(cos), Arc::new(sin));
    check(
        |x| rope(x, cos.clone(), sin.clone(), t).unwrap(),
        |x| candle_nn::rotary_emb::rope_slow(x, &ct, &st).unwrap(),
        rand(&[2, 3, t, d], 7),
    );
}

#[test]
fn swiglu_matches_composed() {
    let up = Var::from_tensor(&rand(&[4, 9], 8)).unwrap();
    let gate = Var::from_tensor(&rand(&[4, 9], 9)).unwrap();
    let yf = swiglu(gate.as_tensor(), up.as_tensor()).unwrap();
    let yr = (candle_nn::ops::silu(gate.as_tensor()).unwrap() * up.as_tensor()).unwrap();
    close(&yf, &yr, 1e-12);
    let cot = rand(&[4, 9], 10);
    let gf = (yf * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = (yr * &cot).unwrap().sum_all().unwrap().backward().unwrap();
    close(
        gf.get(gate.as_tensor()).unwrap(),
        gr.get(gate.as_tensor()).unwrap(),
        1e-12,
    );
    close(
        gf.get(up.as_tensor()).unwrap(),
        gr.get(up.as_tensor()).unwrap(),
        1e-12,
    );
}

#[test]
fn packed_swiglu_matches_composed() {
    // Rows long enough (i = 700) that a parallel task holds several rows, plus a ragged last task.
    for (n, i) in [(4usize, 9usize), (13, 700)] {
        check(
            |gu| packed_swiglu(gu).unwrap(),
            |gu| {
                let gate = gu.narrow(1, 0, i).unwrap();
                let up = gu.narrow(1, i, i).unwrap();
                (candle_nn::ops::silu(&gate).unwrap() * up).unwrap()
            },
            rand(&[n, 2 * i], 11),
        );
    }
    // Its rounding is the unpacked kernel's, element for element (f32).
    let gu = rand(&[5, 18], 12).to_dtype(DType::F32).unwrap();
    let (gate, up) = (gu.narrow(1, 0, 9).unwrap(), gu.narrow(1, 9, 9).unwrap());
    let a = packed_swiglu(&gu).unwrap().flatten_all().unwrap();
    let b = swiglu(&gate, &up).unwrap().flatten_all().unwrap();
    assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    assert!(packed_swiglu(&rand(&[3, 7], 1)).is_err(), "odd width");
}
