//! The per-layer plan: what one transformer block does, step by step, as data. Both backends
//! walk the same plan, so a new family is a few fields in [`crate::config`] rather than another
//! copy of the layer loop.
//!
//! One block, in order (a step is skipped when its field says so):
//! 1. `norm` of the residual stream (RMSNorm or LayerNorm with bias);
//! 2. Q, K, V: three projections or one fused `attn_qkv` split into Q | K | V; biases if any;
//! 3. per-head RMSNorm of Q and K (`qk_norm`);
//! 4. RoPE on Q and K with `rope` (none for learned positions);
//! 5. causal attention over the KV cache, within `window` if set, scores times `attn_scale`,
//!    each head's learned sink logit in its softmax if `sinks`;
//! 6. output projection (+ bias), `post_attention_norm` if any, residual add;
//! 7. `norm` again, then the FFN of `ffn` kind with `activation` (+ biases), `post_ffw_norm`
//!    if any, residual add. A mixture of experts (`FfnKind::Moe`) routes each token to its top
//!    experts and sums their FFNs weighted by the softmax of the chosen router logits.

use crate::config::{Activation, FfnKind, ModelConfig, NormKind, Positions, RopeStyle};
use crate::rope::RopeScaling;

/// RoPE of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRope {
    pub style: RopeStyle,
    pub base: f32,
    pub scaling: RopeScaling,
    /// Which precomputed angle table the layer uses: 0 global, 1 local (Gemma 3's sliding
    /// layers, their own base and no position scaling).
    pub table: usize,
}

/// What block `layer` does (see the module docs for the order).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlan {
    pub norm: NormKind,
    pub fused_qkv: bool,
    pub qk_norm: bool,
    /// `None` for learned positions (GPT-2).
    pub rope: Option<LayerRope>,
    pub window: Option<usize>,
    pub attn_scale: f32,
    /// A learned per-head logit joins the attention softmax (GPT-OSS).
    pub sinks: bool,
    pub post_norms: bool,
    pub ffn: FfnKind,
    pub activation: Activation,
}

impl ModelConfig {
    /// The plan of block `layer`.
    pub fn layer_plan(&self, layer: usize) -> LayerPlan {
        let rope = match self.positions {
            Positions::Learned => None,
            Positions::Rope => Some(LayerRope {
                style: self.rope_style,
                base: self.rope_base_of(layer),
                scaling: self.rope_scaling_of(layer),
                table: usize::from(self.rope_base_local.is_some() && self.sliding_layers[layer]),
            }),
        };
        LayerPlan {
            norm: self.norm,
            fused_qkv: self.fused_qkv,
            qk_norm: self.qk_norm,
            rope,
            window: self.window_of(layer),
            attn_scale: self.attn_scale,
            sinks: self.attn_sinks,
            post_norms: self.post_norms,
            ffn: self.ffn,
            activation: self.activation,
        }
    }

    /// The features of this model beyond what the backends ran before issue 14 (plain or
    /// linear RoPE, split Q/K/V, separate gate, RMSNorm, Llama/Qwen2/Gemma 3 layouts). A
    /// backend that has not learned them yet refuses such a model by these names rather than
    /// running it wrongly.
    pub fn extended_features(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if !matches!(self.arch.name(), "llama" | "qwen2" | "gemma3") {
            f.push("architecture");
        }
        if self.ffn == FfnKind::Moe {
            f.push("mixture of experts");
        }
        if self.attn_sinks {
            f.push("attention sinks");
        }
        if self.norm != NormKind::Rms {
            f.push("LayerNorm");
        }
        if self.fused_qkv {
            f.push("fused QKV");
        }
        if matches!(self.ffn, FfnKind::FusedGateUp | FfnKind::Plain) {
            f.push("fused or ungated FFN");
        }
        if self.positions != Positions::Rope {
            f.push("learned positions");
        }
        if self.rope_scaling.ext_factor != 0.0 {
            f.push("YaRN RoPE scaling");
        }
        if self.rope_scaling.attn_factor != 1.0 {
            f.push("RoPE attention factor");
        }
        if self.rope_factors.is_some() {
            f.push("RoPE frequency factors");
        }
        if self.arch.name() == "llama" && self.sliding_window.is_some() {
            f.push("sliding window on llama");
        }
        f
    }
}
