//! Constraint conformance (the `constraint` world of contract 0.2.0), over a vocabulary the kit
//! builds so that it knows the bytes of every token: the plugin compiles a trivial constraint
//! (`yes|no` in the first of the contract's kinds it accepts), its masks are well formed (the
//! right length, something allowed, the end token only once the output is complete), walks
//! through its masks end with the end token within the token budget and spell an output of the
//! constraint's language, a token outside the mask and an unknown kind are refused as reported
//! errors (not traps), and a 128k vocabulary is masked within the host's time bound (the cost
//! of `allowed` is reported).

use std::path::Path;
use std::time::{Duration, Instant};

use orcd_common::{SplitMix64, TokenType, Vocab};
use orcd_plugin_host::{ModelFacts, PluginError, PluginHost, PluginKind};

use crate::harness::host_with;
use crate::{KitError, Report};

/// Vocabulary of the functional checks.
const SMALL_VOCAB: u32 = 1000;
/// A Llama 3-sized vocabulary for the cost measurement (128k).
const LARGE_VOCAB: u32 = 131_072;
/// Tokens a walk may take, the end token included (the `remaining` of the first `allowed`).
const MAX_STEPS: u32 = 64;
/// Seeds of the random walks.
const WALKS: u64 = 6;
/// Ids of the kit vocabulary's special tokens.
const UNK: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;

/// What an output of a trivial constraint must be.
#[derive(Copy, Clone, Debug)]
enum Language {
    /// Exactly `yes` or `no`.
    YesNo,
    /// The JSON string `"yes"` or `"no"` (whitespace around it allowed).
    JsonYesNo,
    /// Any JSON object.
    JsonObject,
}

/// The trivial constraints, tried in order until the plugin compiles one: the same language in
/// each of the kinds the contract names (a plugin need not support them all).
const TRIVIAL: [(&str, &str, Language); 4] = [
    ("regex", "yes|no", Language::YesNo),
    ("gbnf", "root ::= \"yes\" | \"no\"", Language::YesNo),
    (
        "json-schema",
        r#"{"enum": ["yes", "no"]}"#,
        Language::JsonYesNo,
    ),
    ("json-object", "", Language::JsonObject),
];

impl Language {
    fn accepts(self, out: &[u8]) -> bool {
        match self {
            Language::YesNo => out == b"yes" || out == b"no",
            Language::JsonYesNo => matches!(
                serde_json::from_slice::<serde_json::Value>(out),
                Ok(serde_json::Value::String(s)) if s == "yes" || s == "no"
            ),
            Language::JsonObject => matches!(
                serde_json::from_slice::<serde_json::Value>(out),
                Ok(serde_json::Value::Object(_))
            ),
        }
    }
}

/// A SentencePiece-style (`llama`) vocabulary whose token bytes the kit knows: `<unk>`, `<s>`,
/// `</s>`, the 256 byte tokens `<0xXX>`, every printable ASCII character, `▁` (a space), a few
/// words (`yes`, `▁yes`, `ye`, `es`, `{"`, ...), then filler words `▁fN` up to `n` tokens.
pub struct KitVocab {
    pub data: Vocab,
    /// The bytes each token stands for in the output (empty for special tokens).
    pub pieces: Vec<Vec<u8>>,
}

impl KitVocab {
    pub fn new(n: u32) -> KitVocab {
        // (text as stored, type, bytes it stands for)
        let mut entries: Vec<(Vec<u8>, i32, Vec<u8>)> = vec![
            (b"<unk>".to_vec(), 2, Vec::new()),
            (b"<s>".to_vec(), 3, Vec::new()),
            (b"</s>".to_vec(), 3, Vec::new()),
        ];
        for b in 0..=255u8 {
            entries.push((format!("<0x{b:02X}>").into_bytes(), 6, vec![b]));
        }
        for b in 0x21..=0x7Eu8 {
            entries.push((vec![b], 1, vec![b]));
        }
        let words = [
            "▁", "yes", "no", "ye", "es", "▁yes", "▁no", "maybe", "true", "false", "null", "{\"",
            "\":", "\"}", "\",\"", "▁\"", "{}", "[]",
        ];
        for w in words {
            let bytes = w.replace('▁', " ").into_bytes();
            entries.push((w.as_bytes().to_vec(), 1, bytes));
        }
        let mut i = 0;
        while entries.len() < n as usize {
            let w = format!("▁f{i}");
            let bytes = w.replace('▁', " ").into_bytes();
            entries.push((w.into_bytes(), 1, bytes));
            i += 1;
        }
        entries.truncate(n as usize);
        let data = Vocab {
            model: "llama".into(),
            tokens: entries.iter().map(|e| e.0.clone()).collect(),
            token_types: entries.iter().map(|e| TokenType::from_i32(e.1)).collect(),
            unk: Some(UNK),
            bos: Some(BOS),
            eos: Some(EOS),
            ..Vocab::default()
        };
        KitVocab {
            data,
            pieces: entries.into_iter().map(|e| e.2).collect(),
        }
    }

    fn facts(&self) -> ModelFacts {
        ModelFacts {
            architecture: "llama".into(),
            name: "conformance".into(),
            vocab_size: self.pieces.len() as u32,
            context_length: 4096,
            bos: Some(BOS),
            eos: Some(EOS),
            eot: None,
        }
    }

    fn len(&self) -> u32 {
        self.pieces.len() as u32
    }
}

/// The ids whose bits are set in an `allowed` mask.
pub fn mask_ids(mask: &[u32]) -> Vec<u32> {
    let mut ids = Vec::new();
    for (w, &word) in mask.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let b = bits.trailing_zeros();
            ids.push(w as u32 * 32 + b);
            bits &= bits - 1;
        }
    }
    ids
}

fn failed(e: &PluginError) -> String {
    format!("{}: {e}", e.code())
}

/// Run every constraint check against the component at `wasm`.
pub fn check_constraint(wasm: &Path) -> Result<Report, KitError> {
    let vocab = KitVocab::new(SMALL_VOCAB);
    let (host, info) = host_with(wasm, PluginKind::Constraint, vocab.facts(), &vocab.data)?;
    let name = info.name.clone();
    let mut report = Report::new(format!("{} ({})", info.label(), info.kind));

    // The first trivial constraint the plugin compiles; its refusals of the others before it.
    let mut refusals = Vec::new();
    let mut chosen = None;
    for (kind, spec, lang) in TRIVIAL {
        match host.constraint(&name, kind, spec) {
            Ok(_) => {
                chosen = Some((kind, spec, lang));
                break;
            }
            Err(e @ PluginError::Reported { .. }) => refusals.push(format!("{kind}: {e}")),
            Err(e) => {
                refusals.push(format!("{kind}: {}", failed(&e)));
                break;
            }
        }
    }
    let Some((kind, spec, lang)) = chosen else {
        report.add(
            "compiles a trivial constraint",
            false,
            format!("none compiled: {}", refusals.join("; ")),
        );
        return Ok(report);
    };
    let refused = match refusals.as_slice() {
        [] => String::new(),
        r => format!(" (after refusing {})", r.len()),
    };
    report.add(
        "compiles a trivial constraint",
        true,
        format!("{kind} {spec:?}{refused}"),
    );
    let c = Compiled {
        host: &host,
        name: &name,
        kind,
        spec,
        lang,
        vocab: &vocab,
    };

    report.record("first mask is well formed", c.first_mask());
    report.record(
        format!("{WALKS} random walks end complete"),
        (1..=WALKS)
            .map(|seed| {
                let mut rng = SplitMix64(seed);
                c.walk(|ids| ids[(rng.next_u64() % ids.len() as u64) as usize])
                    .map(|(out, _, _)| out)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|outs| {
                let shown: Vec<String> = outs
                    .iter()
                    .map(|o| String::from_utf8_lossy(o).into_owned())
                    .collect();
                format!("outputs {shown:?}")
            }),
    );
    report.record("the longest walk ends complete", {
        // Never the end token while another is allowed, shortest pieces first: the walk that
        // stays open longest, which only the end of the token budget may close.
        let pieces = &vocab.pieces;
        c.walk(|ids| {
            *ids.iter()
                .filter(|&&t| t != EOS)
                .min_by_key(|&&t| (pieces[t as usize].len(), t))
                .unwrap_or(&ids[0])
        })
        .map(|(out, steps, _)| format!("{:?} in {steps} tokens", String::from_utf8_lossy(&out)))
    });
    report.record("a token outside the mask is refused", c.refuses_outside());
    report.record("an unknown kind is refused", {
        match host.constraint(&name, "orcd-conformance-no-such-kind", "x") {
            Err(PluginError::Reported { code, .. }) => Ok(format!("reported {code}")),
            Ok(_) => Err("compiled a kind the contract does not name".into()),
            Err(e) => Err(format!("{} instead of a reported error", failed(&e))),
        }
    });
    report.record(format!("{LARGE_VOCAB}-token vocabulary"), {
        large_vocab(wasm, kind, spec, lang)
    });
    Ok(report)
}

/// The trivial constraint the plugin compiled, for more sessions.
struct Compiled<'a> {
    host: &'a PluginHost,
    name: &'a str,
    kind: &'static str,
    spec: &'static str,
    lang: Language,
    vocab: &'a KitVocab,
}

impl Compiled<'_> {
    fn session(&self) -> Result<orcd_plugin_host::ConstraintSession, String> {
        self.host
            .constraint(self.name, self.kind, self.spec)
            .map_err(|e| format!("compile again: {}", failed(&e)))
    }

    fn first_mask(&self) -> Result<String, String> {
        let mut s = self.session()?;
        let ids = mask_ids(&s.allowed(MAX_STEPS).map_err(|e| failed(&e))?);
        if ids.is_empty() {
            return Err("no token allowed at the start".into());
        }
        if ids.contains(&EOS) {
            return Err("the end token is allowed before any output".into());
        }
        if let Some(t) = ids.iter().find(|&&t| t == BOS || t == UNK) {
            return Err(format!("special token {t} allowed (it stands for no text)"));
        }
        Ok(format!(
            "{} of {} tokens allowed",
            ids.len(),
            self.vocab.len()
        ))
    }

    /// Walk the masks, taking `pick`'s choice of the allowed ids at each step, until the end
    /// token; the output must then be complete and in the language. Returns the output, the
    /// tokens taken and the time spent in `allowed`.
    fn walk(
        &self,
        mut pick: impl FnMut(&[u32]) -> u32,
    ) -> Result<(Vec<u8>, u32, Duration), String> {
        let mut s = self.session()?;
        let mut out = Vec::new();
        let mut in_allowed = Duration::ZERO;
        let shown = |out: &[u8]| format!("{:?}", String::from_utf8_lossy(out));
        for step in 0..MAX_STEPS {
            let started = Instant::now();
            let mask = s
                .allowed(MAX_STEPS - step)
                .map_err(|e| format!("allowed after {}: {}", shown(&out), failed(&e)))?;
            in_allowed += started.elapsed();
            let ids = mask_ids(&mask);
            if ids.is_empty() {
                return Err(format!("dead end after {}", shown(&out)));
            }
            let t = pick(&ids);
            if t == EOS {
                let complete = s.is_complete().map_err(|e| failed(&e))?;
                if !complete {
                    return Err(format!(
                        "end token allowed after {}, which is not complete",
                        shown(&out)
                    ));
                }
                s.advance(t)
                    .map_err(|e| format!("refused its allowed end token: {}", failed(&e)))?;
                if !self.lang.accepts(&out) {
                    return Err(format!(
                        "{} is not in the language of {} {:?}",
                        shown(&out),
                        self.kind,
                        self.spec
                    ));
                }
                return Ok((out, step + 1, in_allowed));
            }
            if self.vocab.pieces[t as usize].is_empty() {
                return Err(format!(
                    "allowed token {t} after {}, which stands for no text",
                    shown(&out)
                ));
            }
            s.advance(t).map_err(|e| {
                format!(
                    "refused token {t} that its mask allowed after {}: {}",
                    shown(&out),
                    failed(&e)
                )
            })?;
            out.extend_from_slice(&self.vocab.pieces[t as usize]);
        }
        Err(format!(
            "no end within {MAX_STEPS} tokens (`remaining` counts down to 1): {}",
            shown(&out)
        ))
    }

    fn refuses_outside(&self) -> Result<String, String> {
        let mut s = self.session()?;
        let ids = mask_ids(&s.allowed(MAX_STEPS).map_err(|e| failed(&e))?);
        // A text token the mask leaves out (the kit vocabulary has many).
        let Some(t) = (0..self.vocab.len())
            .find(|t| !ids.contains(t) && !self.vocab.pieces[*t as usize].is_empty())
        else {
            return Err("every text token is allowed at the start".into());
        };
        let piece = String::from_utf8_lossy(&self.vocab.pieces[t as usize]).into_owned();
        match s.advance(t) {
            Err(PluginError::Reported { code, .. }) => Ok(format!("token {t} ({piece:?}): {code}")),
            Ok(()) => Err(format!("took token {t} ({piece:?}) that its mask left out")),
            Err(e) => Err(format!(
                "token {t} ({piece:?}): {} instead of a reported error",
                failed(&e)
            )),
        }
    }
}

/// A walk at a 128k vocabulary (the plugin's `init` reads it all; each `allowed` masks it
/// within the host's per-call time bound); reports the mean cost of `allowed`.
fn large_vocab(
    wasm: &Path,
    kind: &'static str,
    spec: &'static str,
    lang: Language,
) -> Result<String, String> {
    let vocab = KitVocab::new(LARGE_VOCAB);
    let (host, info) = host_with(wasm, PluginKind::Constraint, vocab.facts(), &vocab.data)
        .map_err(|e| e.to_string())?;
    let c = Compiled {
        host: &host,
        name: &info.name,
        kind,
        spec,
        lang,
        vocab: &vocab,
    };
    let mut rng = SplitMix64(7);
    let (out, steps, spent) = c.walk(|ids| ids[(rng.next_u64() % ids.len() as u64) as usize])?;
    Ok(format!(
        "{:?} in {steps} tokens, {:.0} us per allowed()",
        String::from_utf8_lossy(&out),
        spent.as_secs_f64() * 1e6 / f64::from(steps)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kit_vocabulary_spells_what_the_checks_need() {
        let v = KitVocab::new(SMALL_VOCAB);
        assert_eq!(v.len(), SMALL_VOCAB);
        assert_eq!(v.data.tokens.len(), v.pieces.len());
        let id = |text: &str| v.data.tokens.iter().position(|t| t == text.as_bytes());
        assert_eq!(v.pieces[id("▁yes").unwrap()], b" yes");
        assert_eq!(v.pieces[id("<0x0A>").unwrap()], b"\n");
        assert!(v.pieces[EOS as usize].is_empty());
        // A word, its prefix and its first character are all tokens (walks take each).
        assert!(id("y").is_some() && id("ye").is_some() && id("yes").is_some());
        assert_eq!(KitVocab::new(LARGE_VOCAB).len(), LARGE_VOCAB);
    }

    #[test]
    fn masks_and_languages() {
        assert_eq!(mask_ids(&[0b101, 1 << 31]), vec![0, 2, 63]);
        assert!(mask_ids(&[0, 0]).is_empty());
        assert!(Language::YesNo.accepts(b"yes") && !Language::YesNo.accepts(b" yes"));
        assert!(Language::JsonYesNo.accepts(b" \"no\"") && !Language::JsonYesNo.accepts(b"no"));
        assert!(
            Language::JsonObject.accepts(b"{\"a\": 1}") && !Language::JsonObject.accepts(b"[]")
        );
    }
}
