//! The `tojson` filter of chat templates as Python renders it: Hugging Face's
//! `apply_chat_template` and llama-cpp-python's `Jinja2ChatFormatter` both replace Jinja2's
//! filter with `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)`, so templates (GPT-OSS's harmony one writes tool arguments and tool answers
//! with it) expect `", "` and `": "` between items, map keys in their given order, and no HTML
//! escaping, where minijinja's own filter writes compact, HTML-safe JSON.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Deepest nesting written (a template's value is request input).
const MAX_DEPTH: usize = 128;

/// How `json.dumps` was asked to write.
struct Style {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// `value | tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_string()),
        Some(v) => Some(" ".repeat(usize::try_from(v)?)),
    };
    // Python: `separators` defaults to (', ', ': '), or (',', ': ') with an indent.
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => (
                    a.as_str().unwrap_or_default().to_string(),
                    b.as_str().unwrap_or_default().to_string(),
                ),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ));
                }
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let style = Style {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

fn newline(out: &mut String, style: &Style, depth: usize) {
    if let Some(indent) = &style.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
}

fn write_value(out: &mut String, v: &Value, style: &Style, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: the value nests too deeply",
        ));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v)?,
        ValueKind::String => write_string(out, v.as_str().unwrap_or_default(), style.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            write_items(out, style, depth, '[', ']', &items, |out, item| {
                write_value(out, item, style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            let mut pairs = Vec::with_capacity(keys.len());
            for k in keys {
                let item = v.get_item(&k)?;
                pairs.push((k, item));
            }
            write_items(out, style, depth, '{', '}', &pairs, |out, (k, item)| {
                match k.as_str() {
                    Some(s) => write_string(out, s, style.ensure_ascii),
                    // Python writes number and boolean keys as strings.
                    None => write_string(out, &k.to_string(), style.ensure_ascii),
                }
                out.push_str(&style.key_sep);
                write_value(out, item, style, depth + 1)
            })?;
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {} is not JSON", v.kind()),
            ));
        }
    }
    Ok(())
}

/// A JSON array or object: `open`, the items with the separators (and the indent), `close`.
fn write_items<T>(
    out: &mut String,
    style: &Style,
    depth: usize,
    open: char,
    close: char,
    items: &[T],
    mut each: impl FnMut(&mut String, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, style, depth + 1);
        each(out, item)?;
    }
    newline(out, style, depth);
    out.push(close);
    Ok(())
}

/// Integers as digits; floats as Python's `repr` writes them (`1.0`, `0.1`, `1e-05`, `1e+16`,
/// `Infinity`, `NaN`).
fn write_number(out: &mut String, v: &Value) -> Result<(), Error> {
    if v.is_integer() {
        out.push_str(&v.to_string());
        return Ok(());
    }
    let x = f64::try_from(v.clone())?;
    out.push_str(&python_float_repr(x));
    Ok(())
}

/// Python's `float.__repr__` (what `json.dumps` writes): the shortest digits that read back
/// to `x`, positional for exponents -4..16, else `d.ddde±XX`.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (a, b) = digits.split_at((exp + 1) as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let e_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{e_sign}{:02}", exp.abs())
    }
}

/// A JSON string as `json.dumps` writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other
/// control characters as `\u00XX`, and with `ensure_ascii` every non-ASCII character as
/// `\uXXXX` (surrogate pairs above U+FFFF).
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, ctx: serde_json::Value) -> String {
        let mut env = minijinja::Environment::new();
        env.add_filter("tojson", tojson);
        env.render_str(src, ctx).unwrap()
    }

    #[test]
    fn writes_what_python_json_dumps_writes() {
        let v = serde_json::json!({"b": [1, 2.5, "x<y & 'z'"], "a": {"k": null, "t": true},
            "é": "ü\n\t\"", "e": []});
        assert_eq!(
            render("{{ v | tojson }}", serde_json::json!({"v": v})),
            r#"{"b": [1, 2.5, "x<y & 'z'"], "a": {"k": null, "t": true}, "é": "ü\n\t\"", "e": []}"#
        );
        assert_eq!(
            render(
                "{{ v | tojson(ensure_ascii=true, sort_keys=true) }}",
                serde_json::json!({"v": {"z": "é😀", "a": 1}})
            ),
            r#"{"a": 1, "z": "\u00e9\ud83d\ude00"}"#
        );
        assert_eq!(
            render(
                "{{ v | tojson(indent=2) }}",
                serde_json::json!({"v": {"a": [1], "b": {}}})
            ),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
        );
        assert_eq!(
            render(
                "{{ v | tojson(separators=[',', ':']) }}",
                serde_json::json!({"v": {"a": [1, 2]}})
            ),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn floats_read_as_python_repr() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (2.5e-5, "2.5e-05"),
            (1e-4, "0.0001"),
            (123456.789, "123456.789"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (-3.0, "-3.0"),
            (1234567890123456.0, "1234567890123456.0"),
        ] {
            assert_eq!(python_float_repr(x), want, "{x}");
        }
    }
}
