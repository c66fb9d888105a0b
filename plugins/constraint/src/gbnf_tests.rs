//! Unit tests of the GBNF compiler (`super`), kept beside it so the compiler stays under 600 lines.

use super::*;
use crate::dfa::Automaton;

fn automaton(g: &str) -> Automaton {
    Automaton::new(&grammar_regex(g).unwrap_or_else(|e| panic!("{g}: {e}")))
        .unwrap_or_else(|e| panic!("{g}: {e}"))
}

#[test]
fn notation() {
    let a = automaton(
        "# a comment\nroot ::= greeting \" \" name{1,2} [!.]? # trailing\n\
         greeting ::= \"hi\" | \"hello\"\nname ::= [A-Z] [a-z]*\n",
    );
    for ok in ["hi Bob", "hello AnnBob!", "hi X."] {
        assert!(a.matches(ok.as_bytes()), "{ok}");
    }
    for bad in ["hi", "hey Bob", "hi bob", "hi AnnBobCy", "hi Bob!!"] {
        assert!(!a.matches(bad.as_bytes()), "{bad}");
    }
    let a = automaton(r#"root ::= [^"\\\x00-\x1F]+ "\u00e9" [\-\]a]* "\"""#);
    assert!(a.matches("a bé-]a\"".as_bytes()));
    assert!(!a.matches("a\"é\"".as_bytes()));
    let a = automaton("root ::= (\n  \"a\" |\n  \"b\"\n)+ \"{\" . \"}\"\nx ::= \"unused\"");
    assert!(a.matches("abba{ß}".as_bytes()));
    assert!(!a.matches(b"{a}"));
    let a = automaton("root ::= \"x\"{3} \"y\"{2,} \"z\"{0,1}");
    assert!(a.matches(b"xxxyy") && a.matches(b"xxxyyyz"));
    assert!(!a.matches(b"xxyy") && !a.matches(b"xxxy") && !a.matches(b"xxxyyzz"));
}

#[test]
fn tail_recursion_is_a_loop_and_other_recursion_is_bounded() {
    let a = automaton("root ::= item root | item\nitem ::= [a-c] \";\"");
    let long = "a;".repeat(40);
    assert!(a.matches(long.as_bytes()), "tail recursion is exact");
    let a = automaton("root ::= \"(\" root \")\" | \"x\"");
    let nest = |n: usize| format!("{}x{}", "(".repeat(n), ")".repeat(n));
    assert!(a.matches(nest(GRAMMAR_DEPTH - 1).as_bytes()));
    assert!(!a.matches(nest(GRAMMAR_DEPTH).as_bytes()));
    assert!(!a.matches(b"((x)"));
    assert_eq!(
        Automaton::new(&grammar_regex("root ::= \"(\" root \")\"").unwrap()).err(),
        Some(ConstraintError::Unsatisfiable),
        "no base case: no output"
    );
}

#[test]
fn refusals_name_the_place() {
    for (g, what) in [
        ("item ::= \"a\"", "no `root`"),
        ("root ::= item", "`item` is used but never defined"),
        ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
        ("root ::= <think>", "token matches"),
        ("root ::= \"a", "unterminated string"),
        ("root ::= [a-", "unterminated character class"),
        ("root ::= [z-a]", "ends below its start"),
        ("root ::= \"\\q\"", "unknown escape"),
        ("root ::= \"a\"{3001}", "at most 2000"),
        ("root ::= \"a\"{3,2}", "below its minimum"),
        ("root ::= * \"a\"", "nothing before it"),
        ("root := \"a\"", "expecting `::=`"),
        ("root ::= (\"a\"", "expecting `)`"),
        ("root ::= \"a\" )", "expecting a newline"),
        ("root ::= \"\\uD800\"", "not a character"),
    ] {
        let e = grammar_regex(g).expect_err(g);
        assert_eq!(e.code(), "INVALID_GRAMMAR", "{g}");
        assert!(e.to_string().contains(what), "{g}: {e}");
    }
    let e = grammar_regex("root ::= \"a\"\n  \"b\"").expect_err("newline ends the rule");
    assert!(e.to_string().contains("line 2, column 3"), "{e}");
}
