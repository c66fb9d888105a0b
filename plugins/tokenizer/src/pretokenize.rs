//! Pre-tokenizers of BPE vocabularies: they cut text into words before BPE merges run inside
//! each word, with the semantics of llama.cpp's `unicode_regex_split`. Which regexes a
//! vocabulary uses is data ([`crate::pre_table`]); each regex becomes a stage that cuts every
//! piece of the previous stage further (a regex stage keeps the text between matches as pieces
//! too). Regex texts that llama.cpp splits with hand-written code use the same code here
//! ([`crate::split_custom`]); the others run through a regex engine the way llama.cpp runs
//! them through `std::regex` ([`crate::split_regex`]).

use crate::error::TokenizerError;
use crate::pre_table::{self, PreSpec};
use crate::split_custom::{self as custom, Piece};
use crate::split_regex::{RegexStage, Transformed};

/// One regex of a pre-tokenizer.
#[derive(Debug)]
enum Stage {
    Gpt2,
    /// Llama 3 (`max_digits` 3), Qwen2 (1), Qwen3.5 (1, `marks`).
    Llama3 {
        max_digits: usize,
        marks: bool,
    },
    KimiK2,
    AfmoeDigits,
    Newlines,
    Regex(RegexStage),
}

impl Stage {
    /// The stage for one of llama.cpp's regex texts: its hand-written splitter where llama.cpp
    /// has one for exactly this text (`unicode_regex_split_custom`), else the regex engine.
    fn new(regex: &'static str) -> Result<Stage, TokenizerError> {
        use pre_table as t;
        Ok(match regex {
            t::GPT2 => Stage::Gpt2,
            t::LLAMA3 | t::LLAMA3_ORIGINAL => Stage::Llama3 {
                max_digits: 3,
                marks: false,
            },
            t::QWEN2 => Stage::Llama3 {
                max_digits: 1,
                marks: false,
            },
            t::QWEN35 => Stage::Llama3 {
                max_digits: 1,
                marks: true,
            },
            t::KIMI_K2 => Stage::KimiK2,
            t::AFMOE_DIGITS | t::TINY_AYA_DIGITS => Stage::AfmoeDigits,
            t::NEWLINES => Stage::Newlines,
            other => Stage::Regex(RegexStage::new(other)?),
        })
    }
}

/// The word splitting of a BPE vocabulary, chosen by `tokenizer.ggml.pre`.
#[derive(Debug)]
pub struct PreTokenizer {
    spec: &'static PreSpec,
    stages: Vec<Stage>,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for the `tokenizer.ggml.pre` value `pre`; a name
    /// llama.cpp does not know (or that this crate leaves out, see [`pre_table`]) is
    /// [`TokenizerError::UnsupportedPreTokenizer`].
    pub fn new(pre: &str) -> Result<PreTokenizer, TokenizerError> {
        let spec = pre_table::find(pre)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre.to_string()))?;
        let stages = spec
            .regexes
            .iter()
            .map(|r| Stage::new(r))
            .collect::<Result<_, _>>()?;
        Ok(PreTokenizer { spec, stages })
    }

    /// Whether a word that is a token as a whole skips the merges.
    pub fn ignore_merges(&self) -> bool {
        self.spec.ignore_merges
    }

    /// SentencePiece-style BPE (`▁` for spaces, raw UTF-8 token texts) rather than byte-level.
    pub fn spm_style(&self) -> bool {
        self.spec.spm_style
    }

    /// llama.cpp's name of this pre-tokenizer (`LLAMA3`, `QWEN2`, ...).
    pub fn kind(&self) -> &'static str {
        self.spec.kind
    }

    /// Splits `text` into words, returned as sub-slices of `text` in order; their concatenation
    /// is `text`. Fails only when a regex stage gives up on the text (its backtracking limit).
    pub fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, TokenizerError> {
        let chars: Vec<char> = text.chars().collect();
        let mut byte_at = Vec::with_capacity(chars.len() + 1);
        let mut off = 0;
        for &c in &chars {
            byte_at.push(off);
            off += c.len_utf8();
        }
        byte_at.push(off);

        // The text as llama.cpp's `std::regex` sees it, made on first use.
        let mut collapsed: Option<Transformed> = None;
        let mut wide: Option<Transformed> = None;
        let mut pieces = vec![(0, chars.len())];
        for stage in &self.stages {
            pieces = match stage {
                Stage::Gpt2 => each(&chars, &pieces, custom::split_gpt2),
                &Stage::Llama3 { max_digits, marks } => each(&chars, &pieces, |c, p, out| {
                    custom::split_llama3(c, p, max_digits, marks, out)
                }),
                Stage::KimiK2 => each(&chars, &pieces, custom::split_kimi_k2),
                Stage::AfmoeDigits => each(&chars, &pieces, custom::split_afmoe_digits),
                Stage::Newlines => each(&chars, &pieces, custom::split_newlines),
                Stage::Regex(re) => {
                    let view = if re.collapsed() {
                        collapsed.get_or_insert_with(|| Transformed::collapsed(&chars))
                    } else {
                        wide.get_or_insert_with(|| Transformed::wide(&chars))
                    };
                    let mut out = Vec::with_capacity(pieces.len());
                    for &p in &pieces {
                        re.split(view, p, &mut out)?;
                    }
                    out
                }
            };
        }
        Ok(pieces
            .iter()
            .map(|&(s, e)| &text[byte_at[s]..byte_at[e]])
            .collect())
    }
}

/// Runs `split` on every piece, collecting the finer pieces.
fn each(
    chars: &[char],
    pieces: &[Piece],
    split: impl Fn(&[char], Piece, &mut Vec<Piece>),
) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len());
    for &p in pieces {
        split(chars, p, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split<'t>(pre: &str, text: &'t str) -> Vec<&'t str> {
        PreTokenizer::new(pre).unwrap().split(text).unwrap()
    }

    #[test]
    fn gpt2_words() {
        let words = split("gpt-2", "Hello,  world's 123 !!\n\n x");
        assert_eq!(
            words,
            [
                "Hello", ",", " ", " world", "'s", " 123", " !!", "\n\n", " x"
            ]
        );
    }

    #[test]
    fn llama3_words() {
        let words = split("llama-bpe", "I'VE 12345 apples\n\n  ok  ");
        assert_eq!(
            words,
            [
                "I", "'VE", " ", "123", "45", " apples", "\n\n", " ", " ok", "  "
            ]
        );
        let words = split("qwen2", "x 123");
        assert_eq!(words, ["x", " ", "1", "2", "3"]);
    }

    #[test]
    fn isolated_digits() {
        let words = split("starcoder", "ied 4 ½ months 33");
        assert_eq!(words, ["ied", " ", "4", " ", "½", " months", " ", "3", "3"]);
    }

    #[test]
    fn every_table_entry_builds_and_keeps_the_text() {
        let text = "Hello WORLD, I've 1234567 apples!\n\n\t  中文テキスト 한국어 ½ café e\u{301} $x+=1; <sentinel:12> IMGIMGABZ   end  ";
        for spec in pre_table::PRE_TOKENIZERS {
            for name in spec.names {
                let pre = PreTokenizer::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
                let words = pre.split(text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(words.concat(), text, "{name}");
                assert!(words.iter().all(|w| !w.is_empty()), "{name}: {words:?}");
            }
        }
        // Names llama.cpp does not know, and the ones left out, are typed errors.
        for name in ["nonesuch", "whitespace", "roberta-bpe", "jina-v1-en"] {
            assert!(matches!(
                PreTokenizer::new(name),
                Err(TokenizerError::UnsupportedPreTokenizer(_))
            ));
        }
    }

    #[test]
    fn afmoe_digits_and_kimi_han_runs() {
        assert_eq!(split("afmoe", "1234567"), ["1", "234", "567"]);
        assert_eq!(
            split("kimi-k2", "中文abc's 12345"),
            ["中文", "abc's", " ", "123", "45"]
        );
        assert_eq!(split("qwen35", "e\u{301}x"), ["e\u{301}x"]);
        assert_eq!(split("qwen2", "e\u{301}x"), ["e", "\u{301}x"]);
    }

    #[test]
    fn digit_triples_leave_the_rest_between_matches() {
        let words = split("default", "1234567");
        assert_eq!(words, ["123", "456", "7"]);
    }
}
