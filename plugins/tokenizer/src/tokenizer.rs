//! The tokenizer: built once from a [`Vocab`], then `encode` text to ids and turn ids back
//! into bytes, with llama.cpp's semantics (`llama_vocab::impl::tokenize`, `token_to_piece`,
//! `detokenize`).

use crate::bpe::{self, MergeTable};
use crate::byte_level;
use crate::error::TokenizerError;
use crate::fast_map::FastMap;
use crate::pretokenize::PreTokenizer;
use crate::special::{Fragment, SpecialToken, SpecialTokens};
use crate::spm;
use crate::wpm;
use orcd_common::{TokenType, Vocab};

/// Longest text [`Tokenizer::encode`] accepts, in bytes.
pub const MAX_TEXT_BYTES: usize = 8 << 20;
/// Largest vocabulary accepted.
pub const MAX_VOCAB_TOKENS: usize = 1 << 22;

/// SentencePiece's escaped space, U+2581.
const SPM_SPACE: &str = "\u{2581}";

/// llama.cpp's per-token attribute bits (`llama_token_attr`).
mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
}

/// Token texts that llama.cpp treats as end-of-generation and therefore forces to be control
/// tokens, whatever the file says.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
];

/// The algorithm the vocabulary's `tokenizer.ggml.model` selects.
#[derive(Debug)]
enum Algorithm {
    /// BPE with a pre-tokenizer: byte-level (`gpt2`) or SentencePiece-style (`gemma4`).
    Bpe {
        pre: PreTokenizer,
        merges: MergeTable,
    },
    /// SentencePiece-style BPE (`llama`).
    Spm,
    /// WordPiece (`bert`); `max_token_len` is the longest token text in bytes.
    Wpm { max_token_len: usize },
}

/// Which family a vocabulary's tokenizer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE (`tokenizer.ggml.model = gpt2`).
    ByteLevelBpe,
    /// BPE on raw UTF-8 with `▁` for spaces (`tokenizer.ggml.model = gemma4`, or
    /// `tokenizer.ggml.pre = gemma4`).
    SentencePieceBpe,
    /// SentencePiece-style (`tokenizer.ggml.model = llama`).
    SentencePiece,
    /// WordPiece (`tokenizer.ggml.model = bert`).
    WordPiece,
}

/// A tokenizer for one vocabulary.
#[derive(Debug)]
pub struct Tokenizer {
    algorithm: Algorithm,
    /// Token texts as stored. Index = token id.
    tokens: Vec<Box<[u8]>>,
    /// llama.cpp attribute bits per token.
    attrs: Vec<u16>,
    /// Token text -> id.
    token_id: FastMap<Box<[u8]>, u32>,
    /// Scores per token (all zero when the file has none).
    scores: Vec<f32>,
    special: SpecialTokens,
    /// SentencePiece byte fallback: the token for each byte.
    byte_token: [Option<u32>; 256],
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer, checking the vocabulary's consistency.
    pub fn new(spec: Vocab) -> Result<Tokenizer, TokenizerError> {
        let n = spec.tokens.len();
        if n == 0 || n > MAX_VOCAB_TOKENS {
            return Err(TokenizerError::InvalidVocab(format!(
                "{n} tokens (expected 1..={MAX_VOCAB_TOKENS})"
            )));
        }
        if !spec.scores.is_empty() && spec.scores.len() < n {
            return Err(TokenizerError::InvalidVocab(format!(
                "{} scores for {n} tokens",
                spec.scores.len()
            )));
        }
        if !spec.token_types.is_empty() && spec.token_types.len() < n {
            return Err(TokenizerError::InvalidVocab(format!(
                "{} token types for {n} tokens",
                spec.token_types.len()
            )));
        }
        let n_u32 = n as u32;
        for (what, id) in [
            ("bos", spec.bos),
            ("eos", spec.eos),
            ("eot", spec.eot),
            ("unk", spec.unk),
            ("pad", spec.pad),
        ] {
            if let Some(id) = id.filter(|&id| id >= n_u32) {
                return Err(TokenizerError::InvalidVocab(format!(
                    "{what} token id {id} outside {n} tokens"
                )));
            }
        }
        if spec.add_bos && spec.bos.is_none() {
            return Err(TokenizerError::InvalidVocab(
                "add_bos is set but there is no BOS token".into(),
            ));
        }
        if spec.add_eos && spec.eos.is_none() {
            return Err(TokenizerError::InvalidVocab(
                "add_eos is set but there is no EOS token".into(),
            ));
        }

        let mut tokens = Vec::with_capacity(n);
        let mut token_id = FastMap::default();
        token_id.reserve(n);
        for (i, t) in spec.tokens.into_iter().enumerate() {
            // llama.cpp names empty tokens instead of rejecting the file.
            let text: Box<[u8]> = if t.is_empty() {
                format!("[EMPTY_{i}]").into_bytes().into()
            } else {
                t.into()
            };
            if token_id.insert(text.clone(), i as u32).is_some() {
                return Err(TokenizerError::InvalidVocab(format!(
                    "duplicate token {:?} (id {i})",
                    String::from_utf8_lossy(&text)
                )));
            }
            tokens.push(text);
        }

        let mut attrs: Vec<u16> = (0..n)
            .map(|i| {
                match spec
                    .token_types
                    .get(i)
                    .copied()
                    .unwrap_or(TokenType::Normal)
                {
                    TokenType::Undefined => 0,
                    TokenType::Normal => attr::NORMAL,
                    TokenType::Unknown => attr::UNKNOWN,
                    TokenType::Control => attr::CONTROL,
                    TokenType::UserDefined => attr::USER_DEFINED,
                    TokenType::Unused => attr::UNUSED,
                    TokenType::Byte => attr::BYTE,
                }
            })
            .collect();
        for text in EOG_TEXTS {
            if let Some(&id) = token_id.get(text.as_bytes()) {
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        // GPT-OSS's harmony markup is always rendered, so that the answer's channels can be
        // told apart in its text (llama.cpp's `llama_vocab::impl::load` does the same).
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_id.get(text.as_bytes()) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        // With `<|return|>` and `<|call|>` present (o200k_harmony), `<|end|>` only closes one
        // message of an answer: llama.cpp takes it out of the end-of-generation tokens and
        // renders it too.
        let has = |t: &str| token_id.get(t.as_bytes()).copied();
        if let (Some(end), Some(_), Some(_)) = (has("<|end|>"), has("<|return|>"), has("<|call|>"))
        {
            attrs[end as usize] = attr::USER_DEFINED;
        }
        let scores = if spec.scores.is_empty() {
            vec![0.0; n]
        } else {
            spec.scores
        };

        let algorithm = match spec.model.as_str() {
            // llama.cpp: a `gemma4` model always uses the `gemma4` pre-tokenizer.
            "gpt2" | "gemma4" => {
                let pre = PreTokenizer::new(if spec.model == "gemma4" {
                    "gemma4"
                } else {
                    &spec.pre
                })?;
                let merges = MergeTable::new(&spec.merges, &token_id, n_u32);
                Algorithm::Bpe { pre, merges }
            }
            "llama" => Algorithm::Spm,
            "bert" => Algorithm::Wpm {
                max_token_len: tokens.iter().map(|t| t.len()).max().unwrap_or(0),
            },
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };

        let special = special_tokens(&tokens, &attrs, &spec.name);
        let mut byte_token = [None; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            *slot = match &algorithm {
                Algorithm::Spm => token_id
                    .get(format!("<0x{b:02X}>").as_bytes())
                    .or_else(|| token_id.get(&[b as u8][..]))
                    .copied(),
                Algorithm::Bpe { pre, .. } if pre.spm_style() => {
                    token_id.get(format!("<0x{b:02X}>").as_bytes()).copied()
                }
                Algorithm::Bpe { .. } => token_id.get(&[b as u8][..]).copied(),
                Algorithm::Wpm { .. } => None,
            };
        }
        Ok(Tokenizer {
            algorithm,
            tokens,
            attrs,
            token_id,
            scores,
            special,
            byte_token,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            // llama.cpp never prefixes a space for byte-level BPE.
            add_space_prefix: spec.add_space_prefix && spec.model == "llama",
            bos: spec.bos,
            eos: spec.eos,
            eot: spec.eot,
            unk: spec.unk,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> u32 {
        self.tokens.len() as u32
    }

    /// The tokenizer family.
    pub fn kind(&self) -> TokenizerKind {
        match &self.algorithm {
            Algorithm::Bpe { pre, .. } if pre.spm_style() => TokenizerKind::SentencePieceBpe,
            Algorithm::Bpe { .. } => TokenizerKind::ByteLevelBpe,
            Algorithm::Spm => TokenizerKind::SentencePiece,
            Algorithm::Wpm { .. } => TokenizerKind::WordPiece,
        }
    }

    /// llama.cpp's name of the pre-tokenizer (`LLAMA3`, `QWEN2`, ...), for BPE vocabularies.
    pub fn pre_kind(&self) -> Option<&'static str> {
        match &self.algorithm {
            Algorithm::Bpe { pre, .. } => Some(pre.kind()),
            _ => None,
        }
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// The id of a token text, if it is in the vocabulary.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_id.get(text.as_bytes()).copied()
    }

    /// The stored text of a token.
    pub fn token_text(&self, id: u32) -> Result<&[u8], TokenizerError> {
        self.check(id)?;
        Ok(&self.tokens[id as usize])
    }

    /// Whether `id` is a control or unknown token (its piece is empty unless special tokens
    /// are rendered).
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|&a| a & (attr::CONTROL | attr::UNKNOWN) != 0)
    }

    /// Turns text into token ids.
    ///
    /// With `parse_special`, control texts such as `<|im_start|>` become their ids (user-defined
    /// tokens always do). With `add_special`, BOS (and EOS) are added where the vocabulary
    /// asks for them.
    pub fn encode(
        &self,
        text: &str,
        parse_special: bool,
        add_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(TokenizerError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        if add_special && matches!(self.algorithm, Algorithm::Wpm { .. }) {
            return Err(TokenizerError::UnsupportedModel(
                "bert with special tokens added ([CLS] ... [SEP])".into(),
            ));
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let fragments = self.special.partition(text, parse_special);
        match &self.algorithm {
            Algorithm::Wpm { max_token_len } => {
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(start, end) => wpm::encode(
                            &text[start..end],
                            &self.token_id,
                            *max_token_len,
                            self.unk,
                            &mut out,
                        ),
                    }
                }
            }
            Algorithm::Spm => {
                // A space is prefixed at the start and after each special token.
                let mut prev_special = true;
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Fragment::Text(start, end) => {
                            let prefix = if self.add_space_prefix && prev_special {
                                " "
                            } else {
                                ""
                            };
                            let escaped =
                                format!("{prefix}{}", &text[start..end]).replace(' ', SPM_SPACE);
                            self.encode_spm(&escaped, &mut out);
                            prev_special = false;
                        }
                    }
                }
            }
            Algorithm::Bpe { pre, merges } => {
                let mut word = String::new();
                for frag in fragments {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(start, end) if pre.spm_style() => {
                            let escaped = text[start..end].replace(' ', SPM_SPACE);
                            for raw in pre.split(&escaped)? {
                                // Gemma 4: a run of newlines that is a token stays whole
                                // (llama.cpp PR 21343).
                                let newlines =
                                    pre.kind() == "GEMMA4" && !raw.contains(|c| c != '\n');
                                match self.token_id.get(raw.as_bytes()) {
                                    Some(&id) if newlines => out.push(id),
                                    _ => self.encode_bpe_word(
                                        raw,
                                        pre.ignore_merges(),
                                        merges,
                                        &mut out,
                                    ),
                                }
                            }
                        }
                        Fragment::Text(start, end) => {
                            for raw in pre.split(&text[start..end])? {
                                word.clear();
                                byte_level::encode_into(raw, &mut word);
                                self.encode_bpe_word(&word, pre.ignore_merges(), merges, &mut out);
                            }
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    fn encode_spm(&self, text: &str, out: &mut Vec<u32>) {
        for (s, e) in spm::merge(text, &self.token_id, &self.scores) {
            let piece = &text.as_bytes()[s..e];
            if let Some(&id) = self.token_id.get(piece) {
                out.push(id);
                continue;
            }
            // Byte fallback; a vocabulary without the byte's token gives the unknown token.
            for &b in piece {
                out.extend(self.byte_token[b as usize].or(self.unk));
            }
        }
    }

    fn encode_bpe_word(
        &self,
        word: &str,
        ignore_merges: bool,
        merges: &MergeTable,
        out: &mut Vec<u32>,
    ) {
        if ignore_merges && let Some(&id) = self.token_id.get(word.as_bytes()) {
            out.push(id);
            return;
        }
        for (s, e) in bpe::merge_word(word, merges, &self.token_id) {
            let piece = &word.as_bytes()[s..e];
            if let Some(&id) = self.token_id.get(piece) {
                out.push(id);
                continue;
            }
            // As llama.cpp: try each byte of the encoded text as a one-byte token (`<0xXX>`
            // for SentencePiece-style BPE); bytes without one are dropped.
            for &b in piece {
                out.extend(self.byte_token[b as usize]);
            }
        }
    }

    /// The bytes token `id` stands for. Control and unknown tokens give their text when
    /// `render_special` is set and nothing otherwise. The bytes may be part of a UTF-8
    /// character.
    pub fn token_to_piece(&self, id: u32, render_special: bool) -> Result<Vec<u8>, TokenizerError> {
        self.check(id)?;
        let a = self.attrs[id as usize];
        let text = &self.tokens[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL) != 0 && !render_special {
            return Ok(Vec::new());
        }
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return Ok(text.to_vec());
        }
        if a & attr::NORMAL != 0 {
            return Ok(match &self.algorithm {
                Algorithm::Spm | Algorithm::Wpm { .. } => unescape_spm(text),
                Algorithm::Bpe { pre, .. } if pre.spm_style() => unescape_spm(text),
                Algorithm::Bpe { .. } => unescape_byte_level(text),
            });
        }
        if a & attr::BYTE != 0 {
            return Ok(parse_byte_token(text).map(|b| vec![b]).unwrap_or_default());
        }
        Ok(Vec::new())
    }

    /// The bytes of a token sequence. SentencePiece's prefixed space is removed once, from the
    /// first piece. With `skip_special`, a leading BOS and trailing EOS that the vocabulary
    /// adds are dropped and control tokens give nothing.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>, TokenizerError> {
        let mut ids = ids;
        if skip_special && self.add_bos && ids.first().is_some_and(|&id| Some(id) == self.bos) {
            ids = &ids[1..];
        }
        if skip_special && self.add_eos && ids.last().is_some_and(|&id| Some(id) == self.eos) {
            ids = &ids[..ids.len() - 1];
        }
        let mut out = Vec::new();
        let mut strip_space = self.add_space_prefix;
        for &id in ids {
            let piece = self.token_to_piece(id, !skip_special)?;
            let skip = usize::from(strip_space && piece.first() == Some(&b' '));
            out.extend_from_slice(&piece[skip..]);
            strip_space = false;
        }
        Ok(out)
    }

    fn check(&self, id: u32) -> Result<(), TokenizerError> {
        if (id as usize) < self.tokens.len() {
            Ok(())
        } else {
            Err(TokenizerError::UnknownToken {
                id,
                vocab_size: self.vocab_size(),
            })
        }
    }
}

/// The special tokens (control, user-defined, unknown) with llama.cpp's strip attributes:
/// Phi-3 models strip spaces to the right of their special tokens except `<unk>`, `<s>`,
/// `<|endoftext|>`.
fn special_tokens(tokens: &[Box<[u8]>], attrs: &[u16], name: &str) -> SpecialTokens {
    let name = name.to_ascii_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    let list = tokens
        .iter()
        .zip(attrs)
        .enumerate()
        .filter(|(_, (_, a))| **a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
        .filter_map(|(id, (text, a))| {
            // A text that is not UTF-8 can never occur in `&str` input.
            let text = std::str::from_utf8(text).ok()?.to_string();
            let rstrip = phi3 && !matches!(text.as_str(), "<unk>" | "<s>" | "<|endoftext|>");
            Some(SpecialToken {
                id: id as u32,
                control: a & (attr::CONTROL | attr::UNKNOWN) != 0,
                lstrip: false,
                rstrip,
                text,
            })
        })
        .collect();
    SpecialTokens::new(list)
}

/// SentencePiece token text to bytes: `▁` is a space.
fn unescape_spm(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let space = SPM_SPACE.as_bytes();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(space) {
            out.push(b' ');
            i += space.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Byte-level BPE token text to bytes; characters outside the byte map pass through as UTF-8.
fn unescape_byte_level(text: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text);
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match byte_level::char_to_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// The byte of a `<0xXX>` token.
fn parse_byte_token(text: &[u8]) -> Option<u8> {
    let hex = text.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
mod tests;
