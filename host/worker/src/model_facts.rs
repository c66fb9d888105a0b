//! The facts about a loaded model that the HTTP layer reports (`/health`, events, `/v1/models`,
//! the chat template), read once from the GGUF metadata.

use std::collections::HashMap;
use std::path::Path;

use orcd_model::Model;
use orcd_model::quant::GgmlType;

use crate::server::ModelFacts;
use crate::server::chat_template::template_for;

/// Gather [`ModelFacts`] from a validated model; `path` names it when the file has no
/// `general.name`.
pub fn model_facts(model: &Model, path: &Path) -> ModelFacts {
    let gguf = &model.gguf;
    let name = gguf
        .get_str_opt("general.name")
        .ok()
        .flatten()
        .filter(|n| !n.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_string())
        });
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "model".to_string());
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens").ok();
    let token_text = |key: &str| -> String {
        let id = gguf.get_u32_opt(key).ok().flatten();
        match (id, tokens) {
            (Some(id), Some(t)) => t.get(id as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        }
    };
    ModelFacts {
        name,
        id,
        served_names: Vec::new(),
        quant_kind: quant_kind(model),
        vocab_size: model.config.vocab_size,
        context_length: model.config.context_length,
        chat_template: Some(template_for(
            model.config.arch.name(),
            gguf.get_str_opt("tokenizer.chat_template").ok().flatten(),
        )),
        bos_token: token_text("tokenizer.ggml.bos_token_id"),
        eos_token: token_text("tokenizer.ggml.eos_token_id"),
    }
}

/// The file's quantization as llama.cpp names it, from `general.file_type` (e.g. `Q4_1`,
/// `Q4_K_M`); without that key, the weight type holding most bytes among the layer matrices.
fn quant_kind(model: &Model) -> String {
    let named = model
        .gguf
        .get_u32_opt("general.file_type")
        .ok()
        .flatten()
        .and_then(file_type_name);
    if let Some(name) = named {
        return name.to_string();
    }
    let mut bytes: HashMap<GgmlType, u64> = HashMap::new();
    for t in model.gguf.tensors() {
        if t.dims.len() >= 2 && t.name.starts_with("blk.") {
            *bytes.entry(t.ty).or_default() += t.size;
        }
    }
    bytes
        .into_iter()
        .max_by_key(|&(ty, b)| (b, ty.name()))
        .map(|(ty, _)| ty.name().to_ascii_uppercase())
        .unwrap_or_else(|| "unknown".to_string())
}

/// llama.cpp's `llama_ftype` numbers.
fn file_type_name(ftype: u32) -> Option<&'static str> {
    Some(match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_file_types_have_their_names() {
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(4), None);
    }
}
