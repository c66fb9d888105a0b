//! A regex for the decimal integers of a closed range `lo..=hi` (no sign, no leading zeros),
//! so `"minimum": 1, "maximum": 120` is enforced by the automaton rather than hoped for.

/// The regex of `lo..=hi` written in decimal without leading zeros.
pub fn int_range(lo: u64, hi: u64) -> String {
    let mut alts = Vec::new();
    let (lo_len, hi_len) = (digits(lo), digits(hi));
    for len in lo_len..=hi_len {
        let first = if len == 1 {
            0
        } else {
            10u64.pow(len as u32 - 1)
        };
        let last = if len >= 20 {
            u64::MAX
        } else {
            10u64.pow(len as u32) - 1
        };
        let (a, b) = (lo.max(first), hi.min(last));
        if a <= b {
            alts.push(same_length(&a.to_string(), &b.to_string()));
        }
    }
    format!("(?:{})", alts.join("|"))
}

fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// The regex of the digit strings between `a` and `b`, both of the same length, `a <= b`.
fn same_length(a: &str, b: &str) -> String {
    if a.is_empty() {
        return String::new();
    }
    if a == b {
        return a.to_string();
    }
    let (a0, b0) = (a.as_bytes()[0], b.as_bytes()[0]);
    let (ar, br) = (&a[1..], &b[1..]);
    if a0 == b0 {
        return format!("{}{}", a0 as char, same_length(ar, br));
    }
    let n = ar.len();
    let any = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!("[0-9]{{{n}}}")
        }
    };
    if ar.bytes().all(|c| c == b'0') && br.bytes().all(|c| c == b'9') {
        return format!("[{}-{}]{}", a0 as char, b0 as char, any(n));
    }
    let mut alts = vec![format!("{}{}", a0 as char, same_length(ar, &"9".repeat(n)))];
    if a0 + 1 < b0 {
        alts.push(format!(
            "[{}-{}]{}",
            (a0 + 1) as char,
            (b0 - 1) as char,
            any(n)
        ));
    }
    alts.push(format!("{}{}", b0 as char, same_length(&"0".repeat(n), br)));
    format!("(?:{})", alts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dfa::Automaton;

    #[test]
    fn matches_exactly_the_range() {
        for &(lo, hi) in &[
            (0, 0),
            (0, 9),
            (1, 120),
            (7, 1003),
            (18, 65),
            (100, 100),
            (0, 99_999),
        ] {
            let a = Automaton::new(&int_range(lo, hi)).unwrap();
            for n in 0..=(hi + 50) {
                assert_eq!(
                    a.matches(n.to_string().as_bytes()),
                    (lo..=hi).contains(&n),
                    "{lo}..={hi}: {n}"
                );
            }
            assert!(!a.matches(b"01"), "leading zero");
        }
    }
}
