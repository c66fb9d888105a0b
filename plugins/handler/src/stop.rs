//! Stop sequences (worker spec 1422): where one ends the output, and how much of the text must
//! be held back because it may be the start of one.

/// A stop sequence found in the text.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StopHit {
    /// Index into the stop list.
    pub stop_index: u32,
    /// Byte offset where the stop sequence begins; the output is cut there.
    pub offset: u32,
}

/// The earliest stop sequence in `text` (ties at one offset: the lower index).
pub fn check_stop(text: &str, stops: &[String]) -> Option<StopHit> {
    stops
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .filter_map(|(i, s)| text.find(s.as_str()).map(|at| (at, i)))
        .min()
        .map(|(at, i)| StopHit {
            stop_index: i as u32,
            offset: at as u32,
        })
}

/// How many bytes at the end of `text` to hold back: the longest suffix that is a proper
/// prefix of some stop sequence (the next token may complete it). Always a character
/// boundary, so `&text[..text.len() - held]` is safe to emit.
pub fn held_back(text: &str, stops: &[String]) -> usize {
    let mut held = 0;
    for stop in stops {
        // Longest proper prefix of `stop` that `text` ends with.
        for (end, _) in stop.char_indices().skip(1) {
            if end > held && text.ends_with(&stop[..end]) {
                held = end;
            }
        }
    }
    held
}

/// What to emit after new text arrived: the byte offset up to which `text` may be sent, and
/// whether a stop sequence ended the output there.
pub fn emit_boundary(text: &str, stops: &[String]) -> (usize, bool) {
    match check_stop(text, stops) {
        Some(hit) => (hit.offset as usize, true),
        None => (text.len() - held_back(text, stops), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn finds_the_earliest_stop() {
        let stops = s(&["END", "\n\n"]);
        assert_eq!(check_stop("no stop here", &stops), None);
        assert_eq!(
            check_stop("a\n\nb END", &stops),
            Some(StopHit {
                stop_index: 1,
                offset: 1
            })
        );
        assert_eq!(
            check_stop("xEND", &stops),
            Some(StopHit {
                stop_index: 0,
                offset: 1
            })
        );
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let stops = s(&["ab", "a"]);
        assert_eq!(check_stop("xab", &stops).unwrap().stop_index, 0);
    }

    #[test]
    fn a_partial_stop_is_held_back() {
        let stops = s(&["<|end|>"]);
        assert_eq!(held_back("hello <|en", &stops), 4);
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(emit_boundary("hello <|en", &stops), (6, false));
        assert_eq!(emit_boundary("hello <|end|> more", &stops), (6, true));
    }

    #[test]
    fn holding_back_respects_characters() {
        let stops = s(&["日本語"]);
        let text = "x日本";
        let held = held_back(text, &stops);
        assert_eq!(held, "日本".len());
        assert!(text.is_char_boundary(text.len() - held));
    }
}
