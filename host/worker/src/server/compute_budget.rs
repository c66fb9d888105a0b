//! A per-request compute bound, checked at admission: a request whose worst case needs more
//! floating-point work than `--max-request-gflop` is refused before its stream starts, so one
//! request cannot hold the worker for minutes (the wall-clock `--inference-timeout-sec` only
//! ends it after the fact).
//!
//! The work of a request of `T = prompt tokens + max_tokens` tokens (at most the context):
//!
//! ```text
//! flops(T) = 2 * P * T                      (every token goes through every weight matrix)
//!          + 2 * n_layers * q_dim * T^2      (causal attention: QK^T and AV, 4 * q_dim * i
//!                                            flops for the token at position i, summed)
//! P = n_layers * (dim * q_dim * 2 + dim * kv_dim * 2 + F) + dim * vocab
//! F = 3 * dim * ffn_dim                     (a gated FFN)
//!   = used * 3 * dim * ffn_dim + dim * experts   (a mixture of experts: the experts a token
//!                                            runs and the router)
//! ```
//!
//! It is an upper bound (sliding-window layers attend to fewer keys) that ignores norms, RoPE
//! and sampling. SmolLM2-135M: about 0.27 GFLOP per token plus the attention term.

use orcd_model::ModelConfig;
use orcd_model::config::MoeConfig;

use super::error::AppError;

/// What one token and one attention pair cost on the loaded model, in FLOPs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComputeCost {
    /// `2 * P` (see the module docs).
    pub flops_per_token: f64,
    /// `2 * n_layers * q_dim`: the attention term's factor of `T^2`.
    pub attention_flops_per_token_squared: f64,
}

impl ComputeCost {
    /// The cost model of `config` (see the module docs).
    pub fn of(config: &ModelConfig) -> ComputeCost {
        let (dim, q, kv, ffn) = (
            config.dim as f64,
            config.q_dim() as f64,
            config.kv_dim() as f64,
            config.ffn_dim as f64,
        );
        let layer = dim * q * 2.0 + dim * kv * 2.0 + ffn_params(dim, ffn, config.moe);
        let params = config.n_layers as f64 * layer + dim * config.vocab_size as f64;
        ComputeCost {
            flops_per_token: 2.0 * params,
            attention_flops_per_token_squared: 2.0 * config.n_layers as f64 * q,
        }
    }

    /// GFLOPs of a request of `tokens` tokens.
    pub fn gflop(&self, tokens: usize) -> f64 {
        let t = tokens as f64;
        (self.flops_per_token * t + self.attention_flops_per_token_squared * t * t) / 1e9
    }
}

/// Weights one token's FFN reads in a layer (`F` in the module docs): a gated FFN, or the
/// experts a token runs and the router of a mixture of experts.
fn ffn_params(dim: f64, ffn_dim: f64, moe: Option<MoeConfig>) -> f64 {
    match moe {
        Some(m) => m.n_expert_used as f64 * 3.0 * dim * ffn_dim + dim * m.n_expert as f64,
        None => 3.0 * dim * ffn_dim,
    }
}

/// The bound: the model's cost and the most GFLOPs one request may need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComputeBudget {
    pub cost: ComputeCost,
    pub max_gflop: f64,
}

impl ComputeBudget {
    /// `Ok` when a request of `prompt_tokens` that may generate `max_tokens` (in a context of
    /// `context` tokens) fits; else `INVALID_REQUEST` naming the limit.
    pub fn admit(
        &self,
        prompt_tokens: usize,
        max_tokens: u32,
        context: usize,
    ) -> Result<(), AppError> {
        let tokens = (prompt_tokens + max_tokens as usize).min(context.max(prompt_tokens));
        let need = self.cost.gflop(tokens);
        if need <= self.max_gflop {
            return Ok(());
        }
        Err(AppError::invalid(
            "prompt",
            format!(
                "the request needs up to {need:.1} GFLOP ({prompt_tokens} prompt tokens + \
                 max_tokens {max_tokens}), over this worker's per-request compute limit of \
                 {:.1} GFLOP (--max-request-gflop); shorten the prompt or lower max_tokens",
                self.max_gflop
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_grows_linearly_plus_the_attention_square() {
        let cost = ComputeCost {
            flops_per_token: 2e9,
            attention_flops_per_token_squared: 1e6,
        };
        assert_eq!(cost.gflop(0), 0.0);
        // 2e9 * 1000 FLOPs linear + 1e6 * 1000^2 FLOPs attention.
        assert!((cost.gflop(1000) - (2000.0 + 1000.0)).abs() < 1e-9);
        let budget = ComputeBudget {
            cost,
            max_gflop: 100.0,
        };
        // 48 tokens: 96 + 2.3 GFLOP; 60 tokens: 120 + 3.6 GFLOP.
        assert!(budget.admit(40, 8, 4096).is_ok());
        let e = budget.admit(40, 20, 4096).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prompt"));
        assert!(e.message.contains("--max-request-gflop"), "{}", e.message);
        // max_tokens beyond the context counts only up to the context (48 tokens).
        assert!(budget.admit(40, 1_000_000, 48).is_ok());
    }

    #[test]
    fn a_mixture_of_experts_costs_the_experts_a_token_runs_and_the_router() {
        // gpt-oss-20b: dim 2880, expert FFN 2880, 4 of 32 experts a token.
        let moe = MoeConfig {
            n_expert: 32,
            n_expert_used: 4,
        };
        let dense = ffn_params(2880.0, 2880.0, None);
        assert_eq!(dense, 3.0 * 2880.0 * 2880.0);
        assert_eq!(
            ffn_params(2880.0, 2880.0, Some(moe)),
            4.0 * dense + 2880.0 * 32.0
        );
    }
}
