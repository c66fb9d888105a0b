//! The one vocabulary type: the `tokenizer.ggml.*` facts of a GGUF file, as plain data. The host
//! reads it from the model (`orcd_model::vocab`, llama.cpp's defaults applied), the plugin host
//! packs it for the WIT `vocab` interface, and the tokenizer and constraint plugins rebuild it
//! from that interface and build their tokenizer from it.

/// Kind of a vocabulary entry, llama.cpp's numbering of `tokenizer.ggml.token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// 0: not set.
    Undefined,
    /// 1: an ordinary token.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: a control token (`<s>`, `<|im_end|>`).
    Control,
    /// 4: a user-defined token, matched in the text before the model's algorithm runs.
    UserDefined,
    /// 5: an unused slot.
    Unused,
    /// 6: a byte-fallback token such as `<0x0A>`.
    Byte,
}

impl TokenType {
    /// The type for llama.cpp's number; unknown numbers are [`TokenType::Undefined`].
    pub fn from_i32(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Everything a tokenizer needs from the model file. Flags and special ids are the effective
/// values (llama.cpp's defaults already applied by whoever read the file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece-style); others
    /// are passed through for the tokenizer to refuse.
    pub model: String,
    /// `tokenizer.ggml.pre`; empty when absent.
    pub pre: String,
    /// `general.name`; llama.cpp keys a few per-token attributes on it (Phi-3). May be empty.
    pub name: String,
    /// Token texts as stored (`▁` and byte-level characters not undone). Index = token id.
    pub tokens: Vec<Vec<u8>>,
    /// Scores per token (SentencePiece merge priority); empty means all zero.
    pub scores: Vec<f32>,
    /// Types per token; empty means all [`TokenType::Normal`].
    pub token_types: Vec<TokenType>,
    /// BPE merge rules in priority order, each `left right`.
    pub merges: Vec<Vec<u8>>,
    /// Put BOS first when the caller asks for special tokens.
    pub add_bos: bool,
    /// Put EOS last when the caller asks for special tokens.
    pub add_eos: bool,
    /// SentencePiece: prefix a space to text at the start and after special tokens.
    pub add_space_prefix: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
}

impl Vocab {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens (never true for a vocabulary read from a file).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// A stand-in vocabulary of `n` tokens `t0`, `t1`, ... for running plugins without a model
    /// (the conformance kit, tests): `llama` model, BOS 0 and EOS 1 (both control tokens), no
    /// scores or merges.
    pub fn synthetic(n: u32) -> Vocab {
        Vocab {
            model: "llama".into(),
            tokens: (0..n).map(|i| format!("t{i}").into_bytes()).collect(),
            token_types: (0..n)
                .map(|i| {
                    if i < 2 {
                        TokenType::Control
                    } else {
                        TokenType::Normal
                    }
                })
                .collect(),
            bos: Some(0),
            eos: Some(1),
            ..Vocab::default()
        }
    }
}
