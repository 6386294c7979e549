//! Fused projections: linear layers that read the same input (a layer's q/k/v, its gate/up)
//! stored as one packed weight `[Σ out, in]`, so a step runs one matmul where it ran two or three
//! (one pass over the input, one packing of it, one parallel dispatch).
//!
//! The packed tensor is the model's storage and the one trainable variable; the HF modules are
//! row ranges of it ([`Part`]). Everything that speaks HF names (save, weight updates, the
//! engine's update check, LoRA's PEFT names) goes through the parts: [`PackedLinear::part_weight`]
//! is a view of the packed rows, and loading packs the HF tensors with one concatenation. LoRA
//! adapters stay per part, so `target_modules = ["q_proj"]` adapts the query rows only.

use crate::error::{ModelError, Result};
use crate::layers::{ForwardMode, LoraAdapter, Param};
use candle_core::Tensor;

/// One HF module inside a packed weight: rows `offset .. offset + len`.
#[derive(Debug, Clone)]
pub struct Part {
    /// The HF module name (`names::Q_PROJ`, …).
    pub module: &'static str,
    /// First output row of the part in the packed weight.
    pub offset: usize,
    /// Output rows of the part.
    pub len: usize,
    /// The part's own LoRA adapter.
    pub lora: Option<LoraAdapter>,
}

/// Linear layers sharing an input, packed along the output dimension.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    /// Packed weight `[Σ out, in]`, parts in order.
    pub weight: Param,
    /// Packed bias `[Σ out]` (every part has one, or none does).
    pub bias: Option<Param>,
    /// The parts, in row order.
    pub parts: Vec<Part>,
    /// Whether the packed weight and bias are trained (false once LoRA is attached).
    pub base_trainable: bool,
}

impl PackedLinear {
    /// Packs `(module, weight [out, in], bias [out])` triples into one weight (and bias).
    pub fn pack(parts: Vec<(&'static str, Tensor, Option<Tensor>)>) -> Result<Self> {
        let with_bias = parts.iter().filter(|p| p.2.is_some()).count();
        if parts.is_empty() || (with_bias != 0 && with_bias != parts.len()) {
            return Err(ModelError::Input(
                "a packed projection needs parts that all have a bias or none".into(),
            ));
        }
        let mut offset = 0;
        let mut layout = Vec::with_capacity(parts.len());
        for (module, w, _) in &parts {
            let len = w.dim(0)?;
            layout.push(Part {
                module,
                offset,
                len,
                lora: None,
            });
            offset += len;
        }
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.1).collect();
        let weight = Param::new(Tensor::cat(&weights, 0)?)?;
        let bias = if with_bias > 0 {
            let biases: Vec<&Tensor> = parts.iter().filter_map(|p| p.2.as_ref()).collect();
            Some(Param::new(Tensor::cat(&biases, 0)?)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            parts: layout,
            base_trainable: true,
        })
    }

    /// `x Wᵀ + b` for `x` `[n, in]` as one matmul over the packed rows, then split into the
    /// parts' outputs `[n, out_i]` (views of one buffer), each with its adapter's delta added.
    pub fn forward<const N: usize>(&self, x: &Tensor, mode: ForwardMode) -> Result<[Tensor; N]> {
        if N != self.parts.len() {
            return Err(ModelError::Input(format!(
                "packed projection has {} parts, {N} asked for",
                self.parts.len()
            )));
        }
        let y = self.forward_packed(x, mode)?;
        let mut out = Vec::with_capacity(N);
        for p in &self.parts {
            let mut part = y.narrow(1, p.offset, p.len)?;
            if mode.adapters {
                if let Some(l) = &p.lora {
                    let delta = x
                        .matmul(&l.a.get(mode.track).t()?)?
                        .matmul(&l.b.get(mode.track).t()?)?;
                    part = (part + (delta * l.scale)?)?;
                }
            }
            out.push(part);
        }
        out.try_into()
            .map_err(|_| ModelError::Input("packed projection: part count".into()))
    }

    /// The packed output `[n, Σ out]` without adapters: `x Wᵀ + b`.
    pub fn forward_packed(&self, x: &Tensor, mode: ForwardMode) -> Result<Tensor> {
        let track_base = mode.track && self.base_trainable;
        let w = self.weight.get(track_base);
        let mut y = if mode.step && !mode.track && crate::xwt::applies(x, w) {
            crate::xwt::matmul_xwt(x, w)?
        } else {
            x.matmul(&w.t()?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b.get(track_base))?;
        }
        Ok(y)
    }

    /// Whether any part has a LoRA adapter.
    pub fn has_lora(&self) -> bool {
        self.parts.iter().any(|p| p.lora.is_some())
    }

    /// Part `i`'s weight `[out_i, in]`: a view of the packed rows (no copy, no graph).
    pub fn part_weight(&self, i: usize) -> Result<Tensor> {
        let p = &self.parts[i];
        Ok(self.weight.get(false).narrow(0, p.offset, p.len)?)
    }

    /// Part `i`'s bias `[out_i]`, when the projection has biases.
    pub fn part_bias(&self, i: usize) -> Result<Option<Tensor>> {
        let p = &self.parts[i];
        match &self.bias {
            Some(b) => Ok(Some(b.get(false).narrow(0, p.offset, p.len)?)),
            None => Ok(None),
        }
    }

    /// Part `i`'s weight with its adapter merged in: `W_i + scale · B A`.
    pub fn merged_part_weight(&self, i: usize) -> Result<Tensor> {
        let w = self.part_weight(i)?;
        match &self.parts[i].lora {
            None => Ok(w),
            Some(l) => {
                let delta = l.b.get(false).matmul(l.a.get(false))?;
                let dtype = w.dtype();
                Ok((w + (delta * l.scale)?.to_dtype(dtype)?)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Linear;
    use candle_core::{DType, Device, Var};

    fn rand(shape: (usize, usize), seed: u64) -> Tensor {
        let mut g = crate::init::SeededNormal::new(seed);
        let v: Vec<f64> = (0..shape.0 * shape.1).map(|_| g.normal()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Three parts with biases, the second with a LoRA adapter: the packed forward equals the
    /// three separate linears in value and in the gradient of every weight.
    #[test]
    fn packed_forward_and_gradients_equal_the_separate_linears() {
        let dims = [("q", 6usize), ("k", 2), ("v", 2)];
        let (inp, n) = (5, 4);
        let ws: Vec<Tensor> = dims
            .iter()
            .enumerate()
            .map(|(s, &(_, o))| rand((o, inp), s as u64))
            .collect();
        let bs: Vec<Tensor> = dims
            .iter()
            .enumerate()
            .map(|(s, &(_, o))| rand((1, o), 10 + s as u64).flatten_all().unwrap())
            .collect();
        let lora = LoraAdapter {
            a: Param::new(rand((2, inp), 20)).unwrap(),
            b: Param::new(rand((2, 2), 21)).unwrap(),
            scale: 0.5,
        };
        let mut packed = PackedLinear::pack(
            dims.iter()
                .zip(ws.iter().zip(&bs))
                .map(|(&(m, _), (w, b))| (m, w.clone(), Some(b.clone())))
                .collect(),
        )
        .unwrap();
        packed.parts[1].lora = Some(lora.clone());
        let separate: Vec<Linear> = ws
            .iter()
            .zip(&bs)
            .enumerate()
            .map(|(i, (w, b))| {
                let mut l = Linear::new(
                    Param::new(w.clone()).unwrap(),
                    Some(Param::new(b.clone()).unwrap()),
                );
                if i == 1 {
                    l.lora = Some(lora.clone());
                }
                l
            })
            .collect();
        let x = Var::from_tensor(&rand((n, inp), 30)).unwrap();
        let mode = ForwardMode {
            track: true,
            adapters: true,
            step: false,
        };
        let got: [Tensor; 3] = packed.forward(x.as_tensor(), mode).unwrap();
        let want: Vec<Tensor> = separate
            .iter()
            .map(|l| l.forward(x.as_tensor(), mode).unwrap())
            .collect();
        let cot: Vec<Tensor> = (0..3)
            .map(|i| rand(want[i].dims2().unwrap(), 40 + i as u64))
            .collect();
        let loss = |ys: &[Tensor]| {
            ys.iter()
                .zip(&cot)
                .map(|(y, c)| (y * c).unwrap().sum_all().unwrap())
                .reduce(|a, b| (a + b).unwrap())
                .unwrap()
        };
        for (g, w) in got.iter().zip(&want) {
            assert!(max_diff(g, w) < 1e-12);
        }
        let (gp, gs) = (
            loss(&got).backward().unwrap(),
            loss(&want).backward().unwrap(),
        );
        let dx = max_diff(
            gp.get(x.as_tensor()).unwrap(),
            gs.get(x.as_tensor()).unwrap(),
        );
        assert!(dx < 1e-12, "dx {dx}");
        let dw = gp.get(packed.weight.var().as_tensor()).unwrap();
        let db = gp
            .get(packed.bias.as_ref().unwrap().var().as_tensor())
            .unwrap();
        for (i, (p, l)) in packed.parts.iter().zip(&separate).enumerate() {
            let want_w = gs.get(l.weight.var().as_tensor()).unwrap();
            let want_b = gs.get(l.bias.as_ref().unwrap().var().as_tensor()).unwrap();
            assert!(
                max_diff(&dw.narrow(0, p.offset, p.len).unwrap(), want_w) < 1e-12,
                "part {i}"
            );
            assert!(
                max_diff(&db.narrow(0, p.offset, p.len).unwrap(), want_b) < 1e-12,
                "part {i}"
            );
            // The HF view of the part is its rows, and merging adds the adapter.
            assert!(max_diff(&packed.part_weight(i).unwrap(), &ws[i]) == 0.0);
            let merged = max_diff(
                &packed.merged_part_weight(i).unwrap(),
                &l.merged_weight().unwrap(),
            );
            assert!(merged < 1e-12, "part {i}");
        }
        // Untracked (inference) forward: the same values.
        let infer: [Tensor; 3] = packed.forward(x.as_tensor(), ForwardMode::INFER).unwrap();
        for (g, w) in infer.iter().zip(&want) {
            assert!(max_diff(g, w) < 1e-12);
        }
        assert!(
            packed.forward::<2>(x.as_tensor(), mode).is_err(),
            "part count is checked"
        );
    }

    #[test]
    fn parts_must_agree_on_bias() {
        let w = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let mixed = vec![("a", w.clone(), Some(b)), ("b", w, None)];
        assert!(PackedLinear::pack(mixed).is_err());
        assert!(PackedLinear::pack(vec![]).is_err());
    }
}
