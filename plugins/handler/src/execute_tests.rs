//! Unit tests of the `/execute` body parser (`super`), kept beside it so the parser stays under 600 lines.

use super::*;

fn limits() -> Limits {
    Limits {
        max_prompt_chars: 32768,
        max_tokens_cap: 2048,
        vocab_size: 49152,
        context_length: 8192,
        samplers: vec!["standard".into(), "mirostat".into()],
    }
}

fn parse(body: &str) -> Result<JobRequest, Invalid> {
    parse_execute(body.as_bytes(), "application/json", &limits())
}

fn field_of(body: &str) -> String {
    parse(body).expect_err(body).field
}

#[test]
fn an_empty_key_is_named_quoted() {
    // Found by the execute_body fuzz target: the error named an empty field.
    assert_eq!(field_of(r#"{"job_id":"r","":"[a-z]+"}"#), "\"\"");
    assert_eq!(field_of(r#"{"job_id":"r","":1,"":2}"#), "\"\"");
}

#[test]
fn minimal_body_gets_the_spec_defaults() {
    let j = parse(r#"{"job_id":"j1","prompt":"hi"}"#).unwrap();
    assert_eq!(j.max_tokens, 2048);
    assert_eq!(j.temperature, 1.0);
    assert_eq!((j.top_p, j.top_k, j.min_p), (1.0, 0, 0.0));
    assert_eq!(j.repetition_penalty, 1.0);
    assert!(j.stop.is_empty());
    assert_eq!(j.seed, None);
    assert_eq!(j.sampler, "standard");
}

#[test]
fn full_body_is_taken_as_given() {
    let j = parse(
        r#"{"job_id":"j","prompt":"p","max_tokens":50,"temperature":0.7,"top_p":0.9,
        "top_k":40,"repetition_penalty":1.1,"min_p":0.05,"stop":["\n\n","END"],
        "seed":18446744073709551615,"sampler":"mirostat","sampler_params":{"tau":5}}"#,
    )
    .unwrap();
    assert_eq!(j.max_tokens, 50);
    assert_eq!(j.temperature, 0.7);
    assert_eq!(j.top_k, 40);
    assert_eq!(j.stop, ["\n\n", "END"]);
    assert_eq!(j.seed, Some(u64::MAX));
    assert_eq!(j.sampler, "mirostat");
    assert_eq!(j.sampler_params, [("tau".to_string(), 5.0)]);
}

#[test]
fn each_refusal_names_its_field() {
    let cases = [
        (r#"{"prompt":"p"}"#, "job_id"),
        (r#"{"job_id":"","prompt":"p"}"#, "job_id"),
        (r#"{"job_id":"j"}"#, "prompt"),
        (r#"{"job_id":"j","prompt":""}"#, "prompt"),
        (
            r#"{"job_id":"j","prompt":"p","max_tokens":0}"#,
            "max_tokens",
        ),
        (
            r#"{"job_id":"j","prompt":"p","max_tokens":2049}"#,
            "max_tokens",
        ),
        (
            r#"{"job_id":"j","prompt":"p","max_tokens":1.5}"#,
            "max_tokens",
        ),
        (
            r#"{"job_id":"j","prompt":"p","temperature":2.01}"#,
            "temperature",
        ),
        (r#"{"job_id":"j","prompt":"p","top_k":49153}"#, "top_k"),
        (r#"{"job_id":"j","prompt":"p","seed":-1}"#, "seed"),
        (
            r#"{"job_id":"j","prompt":"p","stop":["a","b","c","d","e"]}"#,
            "stop",
        ),
        (r#"{"job_id":"j","prompt":"p","stop":["a",""]}"#, "stop[1]"),
        (
            r#"{"job_id":"j","prompt":"p","sampler":"No Pe"}"#,
            "sampler",
        ),
        (
            r#"{"job_id":"j","prompt":"p","temprature":1}"#,
            "temprature",
        ),
        (
            r#"{"job_id":"j","prompt":"p","sampler_params":{"tau":"x"}}"#,
            "sampler_params.tau",
        ),
        (r#"{"job_id":"j","prompt":"p""#, "body"),
        (r#"[1,2]"#, "body"),
    ];
    for (body, field) in cases {
        assert_eq!(field_of(body), field, "{body}");
        assert!(parse(body).unwrap_err().message.starts_with(field));
    }
}

#[test]
fn prompt_length_counts_characters() {
    let at_cap = format!(r#"{{"job_id":"j","prompt":"{}"}}"#, "é".repeat(32768));
    assert!(parse(&at_cap).is_ok());
    let over = format!(r#"{{"job_id":"j","prompt":"{}"}}"#, "a".repeat(32769));
    assert_eq!(field_of(&over), "prompt");
}

#[test]
fn max_tokens_is_bounded_by_the_context() {
    let small = Limits {
        context_length: 100,
        ..limits()
    };
    let body = br#"{"job_id":"j","prompt":"p"}"#;
    assert_eq!(
        parse_execute(body, "application/json", &small)
            .unwrap()
            .max_tokens,
        100
    );
    let body = br#"{"job_id":"j","prompt":"p","max_tokens":101}"#;
    assert_eq!(
        parse_execute(body, "application/json", &small)
            .unwrap_err()
            .field,
        "max_tokens"
    );
}

#[test]
fn content_type_must_be_json() {
    let body = br#"{"job_id":"j","prompt":"p"}"#;
    for ok in ["application/json", "Application/JSON; charset=UTF-8"] {
        assert!(parse_execute(body, ok, &limits()).is_ok(), "{ok}");
    }
    for bad in ["text/plain", "", "application/json; charset=latin1"] {
        let e = parse_execute(body, bad, &limits()).unwrap_err();
        assert_eq!(e.field, "content-type", "{bad}");
    }
}

#[test]
fn null_optional_fields_take_defaults() {
    let j = parse(r#"{"job_id":"j","prompt":"p","seed":null,"stop":null}"#).unwrap();
    assert_eq!(j.seed, None);
    assert_eq!(field_of(r#"{"job_id":null,"prompt":"p"}"#), "job_id");
}

#[test]
fn a_repeated_field_is_refused() {
    assert_eq!(
        field_of(r#"{"job_id":"j","prompt":"a","prompt":"b"}"#),
        "prompt"
    );
    for not_object in ["null", "3", "\"s\"", "true", "[]", "-1", "1.5"] {
        assert_eq!(field_of(not_object), "body", "{not_object}");
    }
}

#[test]
fn non_utf8_body_is_refused() {
    let e = parse_execute(b"{\"job_id\":\"\xff\"}", "application/json", &limits());
    assert_eq!(e.unwrap_err().field, "body");
}
