//! The /execute corpora against the handler's plain-Rust logic (no Wasm): a fast check that
//! the corpus verdicts and `orcd_handler::execute` agree.

use orcd_conformance::corpus::{CorpusLimits, invalid_cases, valid_cases};
use orcd_handler::execute::{Limits, parse_execute};

fn limits(l: &CorpusLimits) -> Limits {
    Limits {
        max_prompt_chars: l.max_prompt_chars,
        max_tokens_cap: l.max_tokens_cap,
        vocab_size: l.vocab_size,
        context_length: l.context_length,
        samplers: l.samplers.clone(),
    }
}

#[test]
fn every_invalid_body_names_its_field() {
    let (l, cases) = invalid_cases().unwrap();
    let l = limits(&l);
    for c in cases {
        let e = parse_execute(c.body.as_bytes(), &c.content_type, &l)
            .expect_err(&format!("{} was accepted", c.name));
        assert_eq!(e.field, c.field, "{}: {}", c.name, e.message);
        assert!(e.message.contains(&c.field), "{}: {}", c.name, e.message);
    }
}

#[test]
fn every_valid_body_is_accepted() {
    let (l, cases) = valid_cases().unwrap();
    let l = limits(&l);
    for c in cases {
        let job = parse_execute(c.body.as_bytes(), &c.content_type, &l)
            .unwrap_or_else(|e| panic!("{} refused: {}", c.name, e.message));
        if let Some(want) = c.expect.get("max_tokens") {
            assert_eq!(Some(u64::from(job.max_tokens)), want.as_u64(), "{}", c.name);
        }
        if let Some(want) = c.expect.get("seed") {
            assert_eq!(job.seed, want.as_u64(), "{}", c.name);
        }
    }
}
