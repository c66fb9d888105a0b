//! The constraint plugin's logic on real vocabularies (SmolLM2, llama-bpe): realistic schemas
//! accept their examples token by token, random walks through the masks always complete and
//! validate (property-style, over the fixtures and over random schemas), tokens outside a
//! mask are refused, and a vocabulary that cannot spell a completion dead-ends (empty mask).

mod common;

use std::sync::Arc;

use common::validate::validate;
use common::{Rng, fixtures, ids, random_walk, smollm2};
use orcd_constraint::{Compiled, ConstraintError, Kind, Session, Vocabulary};
use serde_json::{Value, json};

fn compile(kind: Kind, spec: &str, vocab: &Arc<Vocabulary>) -> Arc<Compiled> {
    Arc::new(Compiled::new(kind, spec, vocab.clone()).unwrap_or_else(|e| panic!("{spec}: {e}")))
}

#[test]
fn fixtures_accept_their_examples_token_by_token() {
    let vocab = smollm2();
    let tok = common::tokenizer("smollm2");
    for f in fixtures() {
        let c = compile(Kind::JsonSchema, &f.schema.to_string(), &vocab);
        let text = f.example.to_string();
        assert!(
            c.automaton().matches(text.as_bytes()),
            "{}: example {text} refused",
            f.name
        );
        let mut s = Session::new(c.clone());
        for id in tok.encode(&text, false, false).unwrap() {
            assert!(
                ids(&s.allowed()).contains(&id),
                "{}: token {id} of {text} not allowed",
                f.name
            );
            s.advance(id).unwrap();
        }
        assert!(s.is_complete(), "{}", f.name);
        let eos = vocab.end_ids()[0];
        assert!(
            ids(&s.allowed()).contains(&eos),
            "{}: EOS not allowed at the end",
            f.name
        );
    }
}

#[test]
fn random_walks_over_the_fixtures_complete_and_validate() {
    let vocab = smollm2();
    let mut rng = Rng(0x5EED_0001);
    for f in fixtures() {
        let c = compile(Kind::JsonSchema, &f.schema.to_string(), &vocab);
        for wander in [0, 8, 40] {
            let out = random_walk(&c, &vocab, &mut rng, wander);
            let text = String::from_utf8(out).expect("UTF-8");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {text}: {e}", f.name));
            validate(&f.schema, &f.schema, &v, "$")
                .unwrap_or_else(|e| panic!("{}: {text}: {e}", f.name));
        }
    }
}

/// A random schema of the supported subset.
fn random_schema(rng: &mut Rng, depth: usize) -> Value {
    let pick = if depth == 0 {
        rng.below(6)
    } else {
        rng.below(9)
    };
    match pick {
        0 => json!({"type": "string", "maxLength": rng.below(12) + 1}),
        1 => json!({"type": "integer"}),
        2 => json!({"type": "number"}),
        3 => json!({"type": "boolean"}),
        4 => json!({"enum": ["red", "green", 7, null]}),
        5 => json!({"type": "integer", "minimum": rng.below(50), "maximum": 50 + rng.below(2000)}),
        6 => {
            let n = rng.below(4) + 1;
            let mut props = serde_json::Map::new();
            let mut required = Vec::new();
            for i in 0..n {
                let name = format!("k{i}_{}", rng.below(100));
                props.insert(name.clone(), random_schema(rng, depth - 1));
                if rng.below(2) == 0 {
                    required.push(Value::String(name));
                }
            }
            json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
        }
        7 => {
            let min = rng.below(2);
            json!({"type": "array", "items": random_schema(rng, depth - 1), "minItems": min, "maxItems": min + rng.below(3)})
        }
        _ => json!({"anyOf": [random_schema(rng, depth - 1), {"type": "null"}]}),
    }
}

#[test]
fn property_random_schemas_never_leave_a_dead_end() {
    let vocab = smollm2();
    let mut rng = Rng(0xC0FF_EE11);
    for case in 0..40 {
        let schema = random_schema(&mut rng, 3);
        let c = compile(Kind::JsonSchema, &schema.to_string(), &vocab);
        for wander in [3, 25] {
            let out = random_walk(&c, &vocab, &mut rng, wander);
            let text = String::from_utf8(out).expect("UTF-8");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("case {case} {schema}: {text}: {e}"));
            validate(&schema, &schema, &v, "$")
                .unwrap_or_else(|e| panic!("case {case} {schema}: {text}: {e}"));
        }
    }
}

#[test]
fn json_object_gives_an_object() {
    let vocab = smollm2();
    let c = compile(Kind::JsonObject, "", &vocab);
    let mut rng = Rng(7);
    for wander in [0, 10, 60] {
        let text = String::from_utf8(random_walk(&c, &vocab, &mut rng, wander)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(v.is_object(), "{text}");
    }
}

#[test]
fn regex_outputs_match() {
    let vocab = smollm2();
    let c = compile(
        Kind::Regex,
        r"(Mon|Tue|Wed) [0-9]{2}:[0-9]{2} (am|pm)",
        &vocab,
    );
    let mut rng = Rng(99);
    for wander in [0, 2, 5, 20] {
        let text = String::from_utf8(random_walk(&c, &vocab, &mut rng, wander)).unwrap();
        assert!(c.automaton().matches(text.as_bytes()), "{text}");
        assert_eq!(text.len(), "Mon 10:30 am".len(), "{text}");
    }
}

#[test]
fn tokens_outside_the_mask_are_refused_and_inside_advance() {
    let vocab = smollm2();
    let c = compile(Kind::JsonSchema, &fixtures()[1].schema.to_string(), &vocab);
    let mut s = Session::new(c.clone());
    let mut rng = Rng(3);
    for _ in 0..12 {
        let mask = s.allowed();
        let allowed = ids(&mask);
        for _ in 0..200 {
            let id = rng.below(vocab.size()) as u32;
            let inside = mask[id as usize / 32] >> (id % 32) & 1 == 1;
            assert_eq!(
                s.peek(id).is_some(),
                inside,
                "token {id} {:?}",
                String::from_utf8_lossy(vocab.piece(id))
            );
        }
        let pick = allowed[rng.below(allowed.len())];
        if vocab.is_end(pick) {
            break;
        }
        s.advance(pick).unwrap();
    }
    assert_eq!(
        s.clone().advance(u32::MAX).err(),
        Some(ConstraintError::TokenNotAllowed(u32::MAX))
    );
}

#[test]
fn a_vocabulary_that_cannot_spell_the_rest_gives_an_empty_mask() {
    // No token holds `z`: after `a` nothing can complete `az`.
    let pieces: Vec<Vec<u8>> = ["a", "b", "ab", ""]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let vocab = Arc::new(Vocabulary::from_pieces(pieces, vec![3]));
    let c = compile(Kind::Regex, "az|b", &vocab);
    let mut s = Session::new(c);
    assert_eq!(ids(&s.allowed()), vec![0, 1], "`ab` can never complete");
    s.advance(0).unwrap();
    assert_eq!(ids(&s.allowed()), Vec::<u32>::new());
}

#[test]
fn what_cannot_be_enforced_is_refused() {
    let vocab = smollm2();
    for (schema, code) in [
        (json!({"type": "string", "pattern": "^a+$"}), "UNSUPPORTED"),
        (json!({"oneOf": [{"type": "string"}]}), "UNSUPPORTED"),
        (json!({"type": "number", "minimum": 1.5}), "UNSUPPORTED"),
        (json!({"type": "array", "uniqueItems": true}), "UNSUPPORTED"),
        (
            json!({"type": "object", "properties": {}, "required": ["x"]}),
            "INVALID_SCHEMA",
        ),
        (json!({"$ref": "#/$defs/missing"}), "INVALID_SCHEMA"),
        (json!({"type": "string", "format": "email"}), "UNSUPPORTED"),
        (json!(false), "UNSATISFIABLE"),
    ] {
        let err = Compiled::new(Kind::JsonSchema, &schema.to_string(), vocab.clone()).err();
        assert_eq!(err.map(|e| e.code()), Some(code), "{schema}");
    }
    assert_eq!(
        Compiled::new(Kind::JsonSchema, "{", vocab.clone())
            .err()
            .map(|e| e.code()),
        Some("INVALID_SCHEMA")
    );
    assert_eq!(
        Compiled::new(Kind::Regex, "(", vocab.clone())
            .err()
            .map(|e| e.code()),
        Some("INVALID_REGEX")
    );
}

#[test]
fn a_128k_vocabulary_masks_the_same_way() {
    let vocab = common::llama_bpe();
    assert!(vocab.size() >= 128_000, "{}", vocab.size());
    let f = &fixtures()[3];
    let c = compile(Kind::JsonSchema, &f.schema.to_string(), &vocab);
    let mut rng = Rng(128);
    let text = String::from_utf8(random_walk(&c, &vocab, &mut rng, 10)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    validate(&f.schema, &f.schema, &v, "$").unwrap();
}

/// The token budget (`allowed_within`): an adversary that always takes the allowed text token
/// leaving the most bytes to write (it would fill strings forever) still ends with EOS inside
/// the budget, with output that validates, whenever the budget holds a shortest completion.
#[test]
fn a_token_budget_is_met_even_by_a_model_that_never_stops() {
    let vocab = smollm2();
    for f in fixtures() {
        let c = compile(Kind::JsonSchema, &f.schema.to_string(), &vocab);
        let mut s = Session::new(c.clone());
        let budget = s.distance().unwrap() + 1 + 30;
        let mut out = Vec::new();
        let mut ended = false;
        for step in 0..budget {
            let allowed = ids(&s.allowed_within(budget - step));
            let text = allowed.iter().copied().filter(|&id| !vocab.is_end(id));
            let worst = text
                .max_by_key(|&id| (s.peek(id).and_then(|n| n.distance()), std::cmp::Reverse(id)));
            let pick = worst.or_else(|| allowed.iter().copied().find(|&id| vocab.is_end(id)));
            let pick = pick.unwrap_or_else(|| panic!("{}: empty mask", f.name));
            s.advance(pick).unwrap();
            if vocab.is_end(pick) {
                ended = true;
                break;
            }
            out.extend_from_slice(vocab.piece(pick));
        }
        let text = String::from_utf8(out).unwrap();
        assert!(ended, "{}: no end within {budget} tokens: {text}", f.name);
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {text}: {e}", f.name));
        validate(&f.schema, &f.schema, &v, "$")
            .unwrap_or_else(|e| panic!("{}: {text}: {e}", f.name));
    }
}

/// Keys come in the schema's `properties` order (OpenAI strict mode's), not alphabetically:
/// the schema text keeps its order through serde_json (`preserve_order`) into the compiler.
#[test]
fn object_keys_follow_the_schema_order() {
    let vocab = smollm2();
    let schema = json!({"type": "object", "properties": {
        "zeta": {"type": "integer"}, "alpha": {"type": "boolean"},
        "mid": {"type": "string", "maxLength": 3}, "beta": {"type": "null"}},
        "required": ["zeta", "alpha", "mid"], "additionalProperties": false});
    let spec = schema.to_string();
    assert!(spec.find("zeta") < spec.find("alpha"), "{spec}");
    let c = compile(Kind::JsonSchema, &spec, &vocab);
    let a = c.automaton();
    assert!(a.matches(br#"{"zeta":1,"alpha":true,"mid":"a"}"#));
    assert!(a.matches(br#"{"zeta":1,"alpha":true,"mid":"a","beta":null}"#));
    assert!(!a.matches(br#"{"alpha":true,"mid":"a","zeta":1}"#));
    assert!(!a.matches(br#"{"zeta":1,"alpha":true,"beta":null,"mid":"a"}"#));
    let order = ["zeta", "alpha", "mid", "beta"];
    let mut rng = Rng(0x0_4DE2);
    for wander in [0, 6, 30] {
        let text = String::from_utf8(random_walk(&c, &vocab, &mut rng, wander)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, order[..keys.len()], "{text}");
    }
}
