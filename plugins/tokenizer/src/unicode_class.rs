//! The Unicode character classes the pre-tokenizers need, with llama.cpp's meanings:
//! letters are general category `L*` (`\p{L}`), numbers `N*` (`\p{N}`), punctuation `P*`
//! (`\p{P}`), marks `M*` (`\p{M}`), symbols `S*` (`\p{S}`), and whitespace is the Unicode
//! `White_Space` property (`\s`).

use unicode_general_category::{GeneralCategory, get_general_category};

/// Whether `c` is a letter (`\p{L}`: Lu, Ll, Lt, Lm, Lo).
pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
    )
}

/// Whether `c` is a number (`\p{N}`: Nd, Nl, No), e.g. `7`, `½`, `Ⅻ`.
pub fn is_number(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    matches!(
        get_general_category(c),
        GeneralCategory::DecimalNumber
            | GeneralCategory::LetterNumber
            | GeneralCategory::OtherNumber
    )
}

/// Whether `c` is punctuation (`\p{P}`: Pc, Pd, Ps, Pe, Pi, Pf, Po).
pub fn is_punctuation(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::ConnectorPunctuation
            | GeneralCategory::DashPunctuation
            | GeneralCategory::OpenPunctuation
            | GeneralCategory::ClosePunctuation
            | GeneralCategory::InitialPunctuation
            | GeneralCategory::FinalPunctuation
            | GeneralCategory::OtherPunctuation
    )
}

/// Whether `c` is a combining mark (`\p{M}`: Mn, Mc, Me).
pub fn is_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// Whether `c` is a symbol (`\p{S}`: Sm, Sc, Sk, So), e.g. `$`, `+`, `©`.
pub fn is_symbol(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::MathSymbol
            | GeneralCategory::CurrencySymbol
            | GeneralCategory::ModifierSymbol
            | GeneralCategory::OtherSymbol
    )
}

/// Whether `c` is a Han character (llama.cpp's `unicode_cpt_is_han`: the CJK unified
/// ideographs, extensions A-F and the compatibility ideographs).
pub fn is_han(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B820..=0x2CEAF
            | 0x2CEB0..=0x2EBEF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// Whether `c` has the Unicode `White_Space` property (llama.cpp's `unicode_set_whitespace`).
/// Unlike `char::is_whitespace` this is exactly the property list, spelled out.
pub fn is_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_unicode_categories() {
        assert!(is_letter('a') && is_letter('Ä') && is_letter('н') && is_letter('我'));
        assert!(!is_letter('1') && !is_letter(' ') && !is_letter('🦙'));
        assert!(is_number('3') && is_number('½') && is_number('٣'));
        assert!(!is_number('a'));
        assert!(
            is_punctuation('!')
                && is_punctuation('(')
                && is_punctuation('～') == is_punctuation('～')
        );
        assert!(!is_punctuation('$') && !is_punctuation('+'));
        assert!(is_whitespace(' ') && is_whitespace('\n') && is_whitespace('\u{3000}'));
        assert!(!is_whitespace('\u{200B}') && !is_whitespace('\u{1C}'));
        assert!(is_mark('\u{301}') && !is_mark('a'));
        assert!(is_symbol('$') && is_symbol('©') && !is_symbol('!'));
        assert!(is_han('我') && !is_han('あ'));
    }
}
