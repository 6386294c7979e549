//! Hugging Face tensor names: the one place they are spelled. [`crate::ModelConfig::expected_tensors`]
//! (what every loader validates against), the decoder's construction, export and trainable
//! parameters, and the LoRA adapters (PEFT's naming) all build names here.

/// The token embedding.
pub const EMBED: &str = "model.embed_tokens.weight";
/// The final norm.
pub const NORM: &str = "model.norm.weight";
/// The untied LM head (a linear: `lm_head.weight`).
pub const LM_HEAD: &str = "lm_head";
/// A layer's norm before attention.
pub const INPUT_NORM: &str = "input_layernorm";
/// A layer's norm before the MLP.
pub const POST_NORM: &str = "post_attention_layernorm";
/// Qwen3's per-head query norm.
pub const Q_NORM: &str = "self_attn.q_norm";
/// Qwen3's per-head key norm.
pub const K_NORM: &str = "self_attn.k_norm";
/// Query projection.
pub const Q_PROJ: &str = "self_attn.q_proj";
/// Key projection.
pub const K_PROJ: &str = "self_attn.k_proj";
/// Value projection.
pub const V_PROJ: &str = "self_attn.v_proj";
/// Attention output projection.
pub const O_PROJ: &str = "self_attn.o_proj";
/// MLP gate projection.
pub const GATE_PROJ: &str = "mlp.gate_proj";
/// MLP up projection.
pub const UP_PROJ: &str = "mlp.up_proj";
/// MLP down projection.
pub const DOWN_PROJ: &str = "mlp.down_proj";
/// The packed q/k/v projection's variable (vLLM's name). Never on disk: checkpoints, weight
/// updates and `named_tensors` use the three HF names; only the trainer's own state (the
/// optimizer's moments) is keyed by it.
pub const QKV_PROJ: &str = "self_attn.qkv_proj";
/// The packed gate/up projection's variable (vLLM's name); like [`QKV_PROJ`], never on disk.
pub const GATE_UP_PROJ: &str = "mlp.gate_up_proj";

/// `model.layers.{layer}.{module}` (a layer's module, without `.weight` / `.bias`).
pub fn layer(layer: usize, module: &str) -> String {
    format!("model.layers.{layer}.{module}")
}

/// `model.layers.{layer}.{module}.weight`.
pub fn layer_weight(layer: usize, module: &str) -> String {
    format!("model.layers.{layer}.{module}.weight")
}

/// `model.layers.{layer}.{module}.bias`.
pub fn layer_bias(layer: usize, module: &str) -> String {
    format!("model.layers.{layer}.{module}.bias")
}

/// PEFT's name of a LoRA matrix of a layer's linear (`a`: `lora_A`, else `lora_B`):
/// `base_model.model.model.layers.{layer}.{module}.lora_A.weight`.
pub fn lora(layer: usize, module: &str, a: bool) -> String {
    let m = if a { "A" } else { "B" };
    format!("base_model.model.model.layers.{layer}.{module}.lora_{m}.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            layer_weight(3, Q_PROJ),
            "model.layers.3.self_attn.q_proj.weight"
        );
        assert_eq!(
            layer_bias(0, V_PROJ),
            "model.layers.0.self_attn.v_proj.bias"
        );
        assert_eq!(
            lora(1, DOWN_PROJ, true),
            "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"
        );
        assert_eq!(
            lora(1, DOWN_PROJ, false),
            "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"
        );
    }
}
