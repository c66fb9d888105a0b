//! Unit tests of [`super::Tokenizer`] (kept beside it, out of the 600-line file).

use super::*;

fn tiny_spm() -> Tokenizer {
    let mut tokens: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>").into_bytes());
        types.push(TokenType::Byte);
    }
    for t in ["▁", "h", "i", "▁h", "▁hi"] {
        tokens.push(t.as_bytes().to_vec());
        types.push(TokenType::Normal);
    }
    let scores = (0..tokens.len()).map(|i| i as f32).collect();
    Tokenizer::new(Vocab {
        model: "llama".into(),
        tokens,
        scores,
        token_types: types,
        add_bos: true,
        add_space_prefix: true,
        bos: Some(1),
        eos: Some(2),
        unk: Some(0),
        ..Vocab::default()
    })
    .expect("valid vocabulary")
}

#[test]
fn spm_merges_by_score_and_falls_back_to_bytes() {
    let t = tiny_spm();
    let hi = t.token_id("▁hi").unwrap();
    assert_eq!(t.encode("hi", false, true).unwrap(), [1, hi]);
    // `é` has no token: its two UTF-8 bytes become byte tokens.
    assert_eq!(
        t.encode("é", false, false).unwrap(),
        [t.token_id("▁").unwrap(), 3 + 0xC3, 3 + 0xA9]
    );
    assert_eq!(
        t.decode(&t.encode("hi é", false, false).unwrap(), false)
            .unwrap(),
        "hi é".as_bytes()
    );
    assert_eq!(t.encode("</s>hi", true, false).unwrap(), [2, hi]);
}

#[test]
fn bad_vocabularies_are_refused() {
    let err = Tokenizer::new(Vocab {
        model: "llama".into(),
        ..Vocab::default()
    })
    .unwrap_err();
    assert!(matches!(err, TokenizerError::InvalidVocab(_)));
    // T5's Unigram vocabularies are not implemented (no decoder in llama.cpp's list).
    let spec = Vocab {
        model: "t5".into(),
        tokens: vec![b"a".to_vec()],
        ..Vocab::default()
    };
    assert_eq!(
        Tokenizer::new(spec).unwrap_err(),
        TokenizerError::UnsupportedModel("t5".into())
    );
    let spec = Vocab {
        model: "gpt2".into(),
        pre: "nonesuch".into(),
        tokens: vec![b"a".to_vec()],
        ..Vocab::default()
    };
    assert!(matches!(
        Tokenizer::new(spec).unwrap_err(),
        TokenizerError::UnsupportedPreTokenizer(_)
    ));
    let spec = Vocab {
        model: "llama".into(),
        tokens: vec![b"a".to_vec(), b"a".to_vec()],
        ..Vocab::default()
    };
    assert!(matches!(
        Tokenizer::new(spec).unwrap_err(),
        TokenizerError::InvalidVocab(_)
    ));
    let spec = Vocab {
        model: "llama".into(),
        tokens: vec![b"a".to_vec()],
        bos: Some(5),
        ..Vocab::default()
    };
    assert!(matches!(
        Tokenizer::new(spec).unwrap_err(),
        TokenizerError::InvalidVocab(_)
    ));
}

#[test]
fn text_over_the_cap_is_refused() {
    let t = tiny_spm();
    let long = "h".repeat(MAX_TEXT_BYTES + 1);
    assert!(matches!(
        t.encode(&long, false, false),
        Err(TokenizerError::TextTooLong { .. })
    ));
}

#[test]
fn byte_level_bpe_merges_lowest_rank_first() {
    // "abc": rules rank 0 "b c", rank 1 "a b": the lower rank wins, giving "a" + "bc".
    let tokens = ["a", "b", "c", "ab", "bc"]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
    let spec = Vocab {
        model: "gpt2".into(),
        pre: "gpt-2".into(),
        tokens,
        merges: vec![b"b c".to_vec(), b"a b".to_vec()],
        ..Vocab::default()
    };
    let t = Tokenizer::new(spec).unwrap();
    assert_eq!(t.encode("abc", false, false).unwrap(), [0, 4]);
    assert_eq!(t.encode("ab", false, false).unwrap(), [3]);
    // A space has no token in this vocabulary and is dropped, as llama.cpp does.
    assert_eq!(t.encode("a b", false, false).unwrap(), [0, 1]);
    assert_eq!(t.decode(&[3, 2], false).unwrap(), b"abc");
}

#[test]
fn unknown_ids_are_errors() {
    let t = tiny_spm();
    assert!(matches!(
        t.token_to_piece(99_999, false),
        Err(TokenizerError::UnknownToken { .. })
    ));
    assert!(t.decode(&[99_999], false).is_err());
    assert_eq!(t.token_to_piece(1, false).unwrap(), b"");
    assert_eq!(t.token_to_piece(1, true).unwrap(), b"<s>");
}
