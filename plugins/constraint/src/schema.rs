//! JSON Schema (the subset OpenAI's strict mode accepts) to a regular expression over the
//! output's text.
//!
//! # Output policy
//! The output is compact JSON: no whitespace outside strings, so a generation cannot wander
//! into endless spaces or newlines. Object keys come in the schema's `properties` order, as
//! OpenAI's strict mode writes them (the workspace builds serde_json with `preserve_order`, so
//! the worker, the request handler and this plugin all keep the order the request declared).
//! Numbers are bounded: at most 16 integer digits, 15 fraction digits, a 2-digit exponent.
//! Values of an unconstrained schema (`{}`, `json_object`) nest at most [`ANY_DEPTH`] levels;
//! a recursive `$ref` is expanded at most [`REF_DEPTH`] times (below that, only its
//! non-recursive alternatives remain).
//!
//! # Supported
//! `type` (one or a list), `properties`, `required`, `additionalProperties` (false, true or a
//! schema; with `properties`, only the declared keys are produced, which still validates),
//! `enum`, `const`, `items`, `minItems`, `maxItems`, `anyOf`, `allOf` of one schema, `$ref` to
//! `#`, `#/$defs/NAME` or `#/definitions/NAME`, `minLength`/`maxLength`, `format` (`date`,
//! `time`, `date-time`, `uuid`), and integer `minimum`/`maximum` of 0 or more (through a range
//! regex). Annotations (`title`, `description`, `default`, ...) are ignored.
//!
//! Any other validation keyword (`pattern`, `oneOf`, `not`, number bounds, `uniqueItems`, ...)
//! is refused with [`ConstraintError::Unsupported`] naming the keyword: a constraint the plugin
//! cannot enforce is never silently weakened.

use serde_json::{Map, Value};

use crate::error::ConstraintError;
use crate::int_range::int_range;

/// How many levels an unconstrained value (`{}`, `json_object`) may nest.
pub const ANY_DEPTH: usize = 4;
/// How many times one `$ref` may be expanded inside itself.
pub const REF_DEPTH: usize = 3;
/// Largest regex this compiler produces, in bytes (a guard against exponential schemas).
const MAX_REGEX_BYTES: usize = 1 << 20;

/// A regex that matches nothing (an empty class intersection).
const NOTHING: &str = "[a&&b]";
/// One character of a JSON string's contents: anything but `"`, `\` and control characters,
/// or an escape.
const STRING_CHAR: &str = r#"(?:[^"\\\x00-\x1F]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})"#;
const INTEGER: &str = r"(?:0|-?[1-9][0-9]{0,15})";
const NUMBER: &str = r"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,15})?(?:[eE][+-]?[0-9]{1,2})?";
const DATE: &str = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])";
const TIME: &str = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
const UUID: &str = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

/// Keywords that only annotate (never restrict) a value.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
    "strict",
    "name",
];

/// Compile a JSON Schema document into a regex for its compact JSON text.
pub fn schema_regex(root: &Value) -> Result<String, ConstraintError> {
    let mut c = Compiler {
        root,
        ref_stack: Vec::new(),
    };
    let re = c.value(root, "schema")?;
    if re.len() > MAX_REGEX_BYTES {
        return Err(ConstraintError::TooLarge(format!(
            "the schema expands to a {}-byte expression (at most {MAX_REGEX_BYTES})",
            re.len()
        )));
    }
    Ok(re)
}

/// A regex for any JSON object (`response_format: json_object`), nesting bounded.
pub fn any_object_regex() -> String {
    object_of(&any_value(ANY_DEPTH - 1))
}

struct Compiler<'a> {
    root: &'a Value,
    /// `$ref`s being expanded, innermost last.
    ref_stack: Vec<String>,
}

impl<'a> Compiler<'a> {
    /// The regex of one (sub)schema; `at` is its JSON pointer-ish path for messages.
    fn value(&mut self, schema: &'a Value, at: &str) -> Result<String, ConstraintError> {
        let obj = match schema {
            Value::Bool(true) => return Ok(any_value(ANY_DEPTH)),
            Value::Bool(false) => return Ok(NOTHING.into()),
            Value::Object(o) => o,
            _ => return Err(invalid(at, "a schema must be an object or a boolean")),
        };
        check_keywords(obj, at)?;
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, at);
        }
        if let Some(c) = obj.get("const") {
            return Ok(literal(c));
        }
        if let Some(e) = obj.get("enum") {
            let Value::Array(items) = e else {
                return Err(invalid(at, "`enum` must be an array"));
            };
            if items.is_empty() {
                return Err(invalid(at, "`enum` must not be empty"));
            }
            return Ok(alternation(items.iter().map(literal)));
        }
        if let Some(any) = obj.get("anyOf") {
            let Value::Array(items) = any else {
                return Err(invalid(at, "`anyOf` must be an array"));
            };
            let mut alts = Vec::with_capacity(items.len());
            for (i, s) in items.iter().enumerate() {
                alts.push(self.value(s, &format!("{at}.anyOf[{i}]"))?);
            }
            return Ok(alternation(alts));
        }
        if let Some(all) = obj.get("allOf") {
            match all {
                Value::Array(items) if items.len() == 1 => {
                    return self.value(&items[0], &format!("{at}.allOf[0]"));
                }
                _ => return Err(unsupported(at, "allOf", "only with a single schema")),
            }
        }
        match obj.get("type") {
            Some(Value::String(t)) => self.typed(obj, t, at),
            Some(Value::Array(types)) => {
                let mut alts = Vec::new();
                for t in types {
                    let Value::String(t) = t else {
                        return Err(invalid(at, "`type` entries must be strings"));
                    };
                    alts.push(self.typed(obj, t, at)?);
                }
                if alts.is_empty() {
                    return Err(invalid(at, "`type` must not be empty"));
                }
                Ok(alternation(alts))
            }
            Some(_) => Err(invalid(at, "`type` must be a string or an array")),
            None if obj.contains_key("properties") => self.typed(obj, "object", at),
            None if obj.contains_key("items") => self.typed(obj, "array", at),
            None => Ok(any_value(ANY_DEPTH)),
        }
    }

    fn typed(
        &mut self,
        obj: &'a Map<String, Value>,
        t: &str,
        at: &str,
    ) -> Result<String, ConstraintError> {
        Ok(match t {
            "string" => string(obj, at)?,
            "integer" => integer(obj, at)?,
            "number" => {
                if let Some(k) = ["minimum", "maximum"]
                    .iter()
                    .find(|k| obj.contains_key(**k))
                {
                    return Err(unsupported(at, k, "on numbers (integers only)"));
                }
                NUMBER.into()
            }
            "boolean" => "(?:true|false)".into(),
            "null" => "null".into(),
            "object" => self.object(obj, at)?,
            "array" => self.array(obj, at)?,
            other => return Err(invalid(at, &format!("unknown type `{other}`"))),
        })
    }

    fn reference(&mut self, r: &'a Value, at: &str) -> Result<String, ConstraintError> {
        let Value::String(path) = r else {
            return Err(invalid(at, "`$ref` must be a string"));
        };
        let target = resolve(self.root, path)
            .ok_or_else(|| invalid(at, &format!("`$ref` {path} does not resolve")))?;
        let depth = self.ref_stack.iter().filter(|p| *p == path).count();
        if depth >= REF_DEPTH {
            return Ok(NOTHING.into());
        }
        self.ref_stack.push(path.clone());
        let out = self.value(target, path);
        self.ref_stack.pop();
        out
    }

    fn object(&mut self, obj: &'a Map<String, Value>, at: &str) -> Result<String, ConstraintError> {
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| invalid(at, "`required` must list strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid(at, "`required` must be an array")),
        };
        let props = match obj.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(invalid(at, "`properties` must be an object")),
        };
        if let Some(missing) = required
            .iter()
            .find(|r| !props.is_some_and(|p| p.contains_key(**r)))
        {
            return Err(invalid(
                at,
                &format!("required property `{missing}` is not in `properties`"),
            ));
        }
        let Some(props) = props.filter(|p| !p.is_empty()) else {
            // A map: any keys, values of `additionalProperties` (any value when absent/true).
            let value = match obj.get("additionalProperties") {
                None | Some(Value::Bool(true)) => any_value(ANY_DEPTH - 1),
                Some(Value::Bool(false)) => return Ok(r"\{\}".into()),
                Some(s) => self.value(s, &format!("{at}.additionalProperties"))?,
            };
            return Ok(object_of(&value));
        };
        let mut members = Vec::with_capacity(props.len());
        for (name, s) in props {
            let v = self.value(s, &format!("{at}.properties.{name}"))?;
            let key = escape(&Value::String(name.clone()).to_string());
            members.push((format!("{key}:(?:{v})"), required.contains(&name.as_str())));
        }
        Ok(format!(r"\{{{}\}}", ordered_members(&members)))
    }

    fn array(&mut self, obj: &'a Map<String, Value>, at: &str) -> Result<String, ConstraintError> {
        let item = match obj.get("items") {
            None | Some(Value::Bool(true)) => any_value(ANY_DEPTH - 1),
            Some(s) => self.value(s, &format!("{at}.items"))?,
        };
        let min = count(obj, "minItems", at)?.unwrap_or(0);
        let max = count(obj, "maxItems", at)?;
        if max.is_some_and(|m| m < min) {
            return Err(invalid(at, "`maxItems` is below `minItems`"));
        }
        if max == Some(0) {
            return Ok(r"\[\]".into());
        }
        let rest = match max {
            Some(m) => format!("{{{},{}}}", min.saturating_sub(1), m - 1),
            None => format!("{{{},}}", min.saturating_sub(1)),
        };
        let body = format!("(?:{item})(?:,(?:{item})){rest}");
        Ok(if min == 0 {
            format!(r"\[(?:{body})?\]")
        } else {
            format!(r"\[{body}\]")
        })
    }
}

/// Members in declared order, commas only between those present: required ones always,
/// optional ones maybe.
fn ordered_members(members: &[(String, bool)]) -> String {
    // Once one member is out, each later one comes with a leading comma.
    let tail = |from: usize| -> String {
        members[from..]
            .iter()
            .map(|(m, req)| {
                if *req {
                    format!(",{m}")
                } else {
                    format!("(?:,{m})?")
                }
            })
            .collect()
    };
    let mut alts = Vec::new();
    for (i, (m, req)) in members.iter().enumerate() {
        alts.push(format!("{m}{}", tail(i + 1)));
        if *req {
            // A required member cannot be skipped: no later member may come first.
            return alternation(alts);
        }
    }
    // Every member is optional: the empty object too.
    format!("(?:{})?", alternation(alts))
}

fn string(obj: &Map<String, Value>, at: &str) -> Result<String, ConstraintError> {
    if let Some(f) = obj.get("format") {
        let inner = match f.as_str() {
            Some("date") => DATE.to_string(),
            Some("time") => TIME.to_string(),
            Some("date-time") => format!("{DATE}T{TIME}"),
            Some("uuid") => UUID.to_string(),
            _ => {
                return Err(unsupported(
                    at,
                    "format",
                    &format!("{f} (date, time, date-time and uuid are)"),
                ));
            }
        };
        return Ok(format!("\"{inner}\""));
    }
    let min = count(obj, "minLength", at)?.unwrap_or(0);
    let max = count(obj, "maxLength", at)?;
    let reps = match max {
        Some(m) if m < min => return Err(invalid(at, "`maxLength` is below `minLength`")),
        Some(m) => format!("{{{min},{m}}}"),
        None if min == 0 => "*".into(),
        None => format!("{{{min},}}"),
    };
    Ok(format!("\"{STRING_CHAR}{reps}\""))
}

fn integer(obj: &Map<String, Value>, at: &str) -> Result<String, ConstraintError> {
    let bound = |k: &str| -> Result<Option<u64>, ConstraintError> {
        match obj.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| unsupported(at, k, "below 0 or not a whole number")),
        }
    };
    let (lo, hi) = (bound("minimum")?, bound("maximum")?);
    if lo.is_none() && hi.is_none() {
        return Ok(INTEGER.into());
    }
    let lo = lo.unwrap_or(0);
    let hi = hi.unwrap_or(9_999_999_999_999_999);
    if hi < lo {
        return Err(invalid(at, "`maximum` is below `minimum`"));
    }
    Ok(int_range(lo, hi))
}

/// `{"key":value,...}` with any string keys.
fn object_of(value: &str) -> String {
    let member = format!("\"{STRING_CHAR}*\":(?:{value})");
    format!(r"\{{(?:{member}(?:,{member})*)?\}}")
}

/// Any JSON value nesting at most `depth` containers.
fn any_value(depth: usize) -> String {
    let scalar = format!("\"{STRING_CHAR}*\"|{NUMBER}|true|false|null");
    if depth == 0 {
        return scalar;
    }
    let inner = any_value(depth - 1);
    let array = format!(r"\[(?:(?:{inner})(?:,(?:{inner}))*)?\]");
    format!("{scalar}|{}|{array}", object_of(&inner))
}

fn count(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, ConstraintError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= 4096 => Ok(Some(n)),
            _ => Err(invalid(
                at,
                &format!("`{key}` must be a whole number up to 4096"),
            )),
        },
    }
}

/// Refuse validation keywords this compiler cannot enforce.
fn check_keywords(obj: &Map<String, Value>, at: &str) -> Result<(), ConstraintError> {
    const KNOWN: &[&str] = &[
        "type",
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "const",
        "items",
        "minItems",
        "maxItems",
        "anyOf",
        "allOf",
        "$ref",
        "minLength",
        "maxLength",
        "format",
        "minimum",
        "maximum",
    ];
    for key in obj.keys() {
        if KNOWN.contains(&key.as_str()) || ANNOTATIONS.contains(&key.as_str()) {
            continue;
        }
        return Err(unsupported(at, key, ""));
    }
    Ok(())
}

/// The node a `$ref` names: `#`, `#/$defs/NAME`, `#/definitions/NAME` (JSON pointer escapes
/// `~0`, `~1` honoured).
fn resolve<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let pointer = path.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// The compact JSON text of `v`, regex-escaped.
fn literal(v: &Value) -> String {
    escape(&v.to_string())
}

fn alternation(alts: impl IntoIterator<Item = String>) -> String {
    let parts: Vec<String> = alts.into_iter().map(|a| format!("(?:{a})")).collect();
    format!("(?:{})", parts.join("|"))
}

/// `text` with every regex metacharacter escaped.
pub fn escape(text: &str) -> String {
    regex_syntax::escape(text)
}

fn invalid(at: &str, why: &str) -> ConstraintError {
    ConstraintError::InvalidSchema(format!("{at}: {why}"))
}

fn unsupported(at: &str, keyword: &str, detail: &str) -> ConstraintError {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" {detail}")
    };
    ConstraintError::Unsupported(format!(
        "{at}: keyword `{keyword}` is not supported{detail}"
    ))
}
