//! GBNF grammars on SmolLM2's vocabulary: llama.cpp's example grammars (from the pinned sdist)
//! compile, accept their examples token by token and refuse violations, and random walks
//! through their masks always complete with output that an independent recognizer
//! (`common/gbnf_check.rs`) accepts; the same for random grammars (property test).

mod common;

use std::sync::Arc;

use common::gbnf_check::Recognizer;
use common::{Rng, ids, llama_grammar, random_walk, smollm2};
use orcd_constraint::{Compiled, Kind, Session, Vocabulary};

/// Run `f` on a thread with a large stack: the recognizer recurses once per character of
/// right-recursive output.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn compile(spec: &str, vocab: &Arc<Vocabulary>) -> Arc<Compiled> {
    Arc::new(
        Compiled::new(Kind::Gbnf, spec, vocab.clone()).unwrap_or_else(|e| panic!("{spec}: {e}")),
    )
}

/// (grammar, outputs it accepts, outputs it refuses).
fn examples() -> Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            "json",
            vec![
                r#"{"a": [1, 2.5e3, "x\n"], "b": {"c": null}}"#,
                "{}",
                "{\n  \"k\": true}",
            ],
            vec![r#"{"a": }"#, "[1]", r#"{"a": 01}"#, "{'a': 1}"],
        ),
        (
            "arithmetic",
            vec!["x = 1\n", "(a +2) *b= c\nd=3\n"],
            vec!["x = \n", "1 + = 2\n", "x = 1"],
        ),
        (
            "list",
            vec!["- milk\n- eggs\n"],
            vec!["- milk", "* milk\n", "- \n"],
        ),
        (
            "chess",
            vec!["1. e4 e5\n2. Nf3 Nc6\n"],
            vec!["1. e4 e5\n", "1. e9 e5\n2. Nf3 Nc6\n"],
        ),
        (
            "json_arr",
            vec!["[\n1,\n\"two\"]", "[\n]"],
            vec!["[1]", "[\n1,2]"],
        ),
        ("english", vec!["Hello, world!"], vec!["", "Hello  world"]),
        ("japanese", vec!["こんにちは 世界"], vec!["hello"]),
    ]
}

#[test]
fn llama_cpp_examples_accept_and_refuse_what_the_grammar_does() {
    let vocab = smollm2();
    let tok = common::tokenizer("smollm2");
    for (name, good, bad) in examples() {
        let text = llama_grammar(name);
        let c = compile(&text, &vocab);
        let rec = Recognizer::new(&text);
        for g in good {
            assert!(rec.accepts(g), "{name}: the recognizer refuses {g:?}");
            assert!(c.automaton().matches(g.as_bytes()), "{name}: {g:?} refused");
            let mut s = Session::new(c.clone());
            for id in tok.encode(g, false, false).unwrap() {
                assert!(
                    ids(&s.allowed()).contains(&id),
                    "{name}: token {id} of {g:?}"
                );
                s.advance(id).unwrap();
            }
            assert!(s.is_complete(), "{name}: {g:?}");
        }
        for b in bad {
            assert!(!rec.accepts(b), "{name}: the recognizer accepts {b:?}");
            assert!(
                !c.automaton().matches(b.as_bytes()),
                "{name}: {b:?} accepted"
            );
        }
    }
}

#[test]
fn random_walks_through_llama_cpp_grammars_are_accepted() {
    big_stack(random_walks_through_llama_cpp_grammars);
}

fn random_walks_through_llama_cpp_grammars() {
    let vocab = smollm2();
    let mut rng = Rng(0x6B4F_0001);
    for name in [
        "json",
        "arithmetic",
        "list",
        "chess",
        "json_arr",
        "english",
        "c",
    ] {
        let text = llama_grammar(name);
        let t = std::time::Instant::now();
        let c = compile(&text, &vocab);
        eprintln!(
            "{name}: compiled in {:?}, {} states",
            t.elapsed(),
            c.automaton().state_count()
        );
        let rec = Recognizer::new(&text);
        for wander in [0, 10, 40] {
            let out = String::from_utf8(random_walk(&c, &vocab, &mut rng, wander))
                .unwrap_or_else(|e| panic!("{name}: not UTF-8: {e}"));
            assert!(rec.accepts(&out), "{name} (wander {wander}): {out:?}");
        }
    }
}

/// A random grammar: a few rules over a small alphabet, with alternation, repetition, classes,
/// tail recursion and nested recursion (`g ::= "(" ... g ... ")"`).
fn random_grammar(rng: &mut Rng) -> String {
    fn terminal(rng: &mut Rng) -> String {
        let lits = ["\"a\"", "\"bc\"", "\"\\n\"", "\"\"", "\"é\""];
        let classes = ["[a-c]", "[^a-z\\n]", "[xy0-2]"];
        match rng.below(3) {
            0 => lits[rng.below(lits.len())].to_string(),
            1 => classes[rng.below(classes.len())].to_string(),
            _ => format!(
                "({} | {})",
                lits[rng.below(lits.len())],
                classes[rng.below(3)]
            ),
        }
    }
    fn item(rng: &mut Rng, rules: usize, depth: usize) -> String {
        match rng.below(if depth == 0 { 3 } else { 7 }) {
            0 => terminal(rng),
            1 | 2 => format!("r{}", rng.below(rules)),
            3 => format!("({})", alts(rng, rules, depth - 1)),
            // Repetition of terminals only: a repeated rule that reaches itself again is the
            // ambiguity that makes determinization explode (`TOO_LARGE`, but slowly).
            4 => format!("{}{}", terminal(rng), ["*", "+", "?"][rng.below(3)]),
            5 => {
                let m = rng.below(3);
                format!("{}{{{m},{}}}", terminal(rng), m + rng.below(3))
            }
            _ => format!(
                "{} {}",
                item(rng, rules, depth - 1),
                item(rng, rules, depth - 1)
            ),
        }
    }
    fn alts(rng: &mut Rng, rules: usize, depth: usize) -> String {
        let n = 1 + rng.below(3);
        (0..n)
            .map(|_| item(rng, rules, depth))
            .collect::<Vec<_>>()
            .join(" | ")
    }
    let rules = 1 + rng.below(3);
    let mut g = String::from("root ::= r0 (\",\" r0)*\n");
    for r in 0..rules {
        // Every rule has a way out ("z"), so no rule is empty whatever it refers to.
        let tail = if rng.below(2) == 0 {
            format!(" | \"t\" r{r}")
        } else {
            format!(" | \"(\" r{r} \")\"")
        };
        g.push_str(&format!("r{r} ::= \"z\" | {}{tail}\n", alts(rng, rules, 2)));
    }
    g
}

#[test]
fn property_random_grammars_give_outputs_the_recognizer_accepts() {
    big_stack(random_grammars);
}

fn random_grammars() {
    let vocab = smollm2();
    let mut rng = Rng(0x6B4F_5EED);
    for case in 0..20 {
        let g = random_grammar(&mut rng);
        let t = std::time::Instant::now();
        let c = match Compiled::new(Kind::Gbnf, &g, vocab.clone()) {
            Ok(c) => Arc::new(c),
            // Deep mutual recursion may be too large to expand; it must say so.
            Err(e) => {
                assert_eq!(e.code(), "TOO_LARGE", "case {case}: {g}: {e}");
                continue;
            }
        };
        let compiled = t.elapsed();
        let rec = Recognizer::new(&g);
        let t = std::time::Instant::now();
        for wander in [0, 5, 30] {
            let out = String::from_utf8(random_walk(&c, &vocab, &mut rng, wander)).unwrap();
            assert!(
                rec.accepts(&out),
                "case {case} (wander {wander}): {g}\n{out:?}"
            );
        }
        eprintln!(
            "case {case}: compiled in {compiled:?}, walked and checked in {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn grammar_errors_are_typed() {
    let vocab = smollm2();
    for (g, code) in [
        ("root ::= <think>", "INVALID_GRAMMAR"),
        ("item ::= \"a\"", "INVALID_GRAMMAR"),
        ("root ::= \"(\" root \")\"", "UNSATISFIABLE"),
    ] {
        let e = Compiled::new(Kind::Gbnf, g, vocab.clone()).err();
        assert_eq!(e.map(|e| e.code()), Some(code), "{g}");
    }
}
