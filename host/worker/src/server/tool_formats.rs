//! The tool-call formats of the chat templates this worker knows (Hermes/Qwen `<tool_call>`
//! blocks, Mistral's `[TOOL_CALLS]` list, Llama 3.x's bare JSON): how each is recognised in a
//! template, the `regex` that holds a choice's output to its calls, the trigger `regex` that
//! keeps an undecided output on token boundaries of the marker, and reading the calls back.
//! `openai_tools.rs` decides which of them a request gets.

use serde_json::Value;
/// How a model family's calls follow its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each call is `marker` JSON `close` (Hermes: `<tool_call>{...}</tool_call>`, a newline
    /// allowed around the JSON and between blocks); one block per call.
    Tagged { close: &'static str },
    /// One bare JSON call whose `{` is the marker (Llama 3.x: one call per turn).
    Bare,
    /// `marker` then a JSON list of calls (Mistral Nemo / 7B v0.3:
    /// `[TOOL_CALLS][{"name": ..., "arguments": ...}, ...]`).
    List,
    /// A format this worker recognises but does not produce: `auto` and `required` are refused
    /// with its name.
    Refused,
}

/// How a model family writes its tool calls, read off its chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFormat {
    /// The family, for messages.
    pub family: &'static str,
    /// The text the calls begin with.
    pub marker: &'static str,
    /// The key of a call's arguments object.
    pub arguments_key: &'static str,
    pub layout: Layout,
}

/// Hermes-style calls (Qwen 2.5 / 3, Hermes, SmolLM3): `<tool_call>{"name": ..., "arguments":
/// ...}</tool_call>`, one block per call.
pub const HERMES: CallFormat = CallFormat {
    family: "Hermes/Qwen `<tool_call>`",
    marker: "<tool_call>",
    arguments_key: "arguments",
    layout: Layout::Tagged {
        close: "</tool_call>",
    },
};

/// Llama 3.1 / 3.2 custom tools: the answer is a bare `{"name": ..., "parameters": ...}`, so an
/// output that begins with `{` is a call.
pub const LLAMA3_JSON: CallFormat = CallFormat {
    family: "Llama 3.x JSON",
    marker: "{",
    arguments_key: "parameters",
    layout: Layout::Bare,
};

/// Mistral's list form (Mistral Nemo, 7B Instruct v0.3): `[TOOL_CALLS][{"name": ...,
/// "arguments": ...}, ...]`.
pub const MISTRAL_LIST: CallFormat = CallFormat {
    family: "Mistral `[TOOL_CALLS]` list",
    marker: "[TOOL_CALLS]",
    arguments_key: "arguments",
    layout: Layout::List,
};

/// Mistral's later form (Small 3.2, Magistral, Ministral 3): `[TOOL_CALLS]name[ARGS]{...}`,
/// recognised so that its refusal names it.
pub const MISTRAL_ARGS: CallFormat = CallFormat {
    family: "Mistral `[TOOL_CALLS]name[ARGS]`",
    marker: "[TOOL_CALLS]",
    arguments_key: "arguments",
    layout: Layout::Refused,
};

/// The tool-call format a chat template teaches its model, read off the template's text (the
/// markers llama.cpp's `common/chat.cpp` looks for): `<tool_call>` (Hermes/Qwen),
/// `[TOOL_CALLS]` with `[ARGS]` (Mistral's later form) or without (its list form), or Llama
/// 3.x's instruction to answer `{"name": function name, "parameters": ...}`. `None`: no format
/// this worker knows.
pub fn call_format(template: &str) -> Option<CallFormat> {
    if template.contains("<tool_call>") {
        Some(HERMES)
    } else if template.contains("[TOOL_CALLS]") && template.contains("[ARGS]") {
        Some(MISTRAL_ARGS)
    } else if template.contains("[TOOL_CALLS]") {
        Some(MISTRAL_LIST)
    } else if template.contains("\"parameters\": dictionary of argument name") {
        Some(LLAMA3_JSON)
    } else {
        None
    }
}

/// The regular expression of a choice's calls in `format`, marker included, each call matching
/// `call` (the regex of one `{"name", <arguments key>}` object); `several`: one or more calls,
/// else exactly one. The call's regex appears once where the layout allows (Hermes blocks
/// repeat as a group), twice for a list (`[C(, C)*]`), which at most doubles the automaton.
pub fn calls_regex(format: CallFormat, call: &str, several: bool) -> String {
    let marker = escape_text(format.marker);
    match format.layout {
        Layout::Tagged { close } => {
            let block = format!("{marker}\\n?(?:{call})\\n?{}\\n?", escape_text(close));
            if several {
                format!("(?:{block})+")
            } else {
                block
            }
        }
        // The marker is the call's own `{`.
        Layout::Bare | Layout::Refused => call.to_string(),
        Layout::List => {
            let more = if several {
                format!("(?:, ?(?:{call}))*")
            } else {
                String::new()
            };
            format!("{marker}\\[(?:{call}){more}\\]")
        }
    }
}

/// `text` as a regex literal.
fn escape_text(text: &str) -> String {
    orcd_constraint::schema::escape(text)
}

/// The calls in a finished calls text (`calls_regex`'s language), as `(name, arguments as
/// JSON text)`; `None` when the text is not whole calls (cut by `max_tokens`).
pub fn read_calls(text: &str, format: CallFormat) -> Option<Vec<(String, String)>> {
    let key = format.arguments_key;
    let call = |v: &Value| -> Option<(String, String)> {
        Some((
            v.get("name")?.as_str()?.to_string(),
            v.get(key)?.to_string(),
        ))
    };
    match format.layout {
        Layout::Bare | Layout::Refused => chosen_call(text, key).map(|c| vec![c]),
        Layout::List => {
            let list: Value = serde_json::from_str(text.strip_prefix(format.marker)?).ok()?;
            let calls = list
                .as_array()?
                .iter()
                .map(call)
                .collect::<Option<Vec<_>>>()?;
            (!calls.is_empty()).then_some(calls)
        }
        Layout::Tagged { close } => {
            let mut calls = Vec::new();
            let mut rest = text.trim_start();
            while !rest.is_empty() {
                rest = rest.strip_prefix(format.marker)?;
                let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
                let v = values.next()?.ok()?;
                calls.push(call(&v)?);
                rest = rest[values.byte_offset()..]
                    .trim_start()
                    .strip_prefix(close)?
                    .trim_start();
            }
            (!calls.is_empty()).then_some(calls)
        }
    }
}

/// The regular expression an `auto` output follows until its trigger is decided: `marker`
/// exactly, a prefix of it, or any text that departs from it (and then anything). The one
/// thing it refuses is text that begins with the whole marker and goes on: the call's
/// constraint must start where the marker ends, on a token boundary.
pub fn trigger_regex(marker: &str) -> String {
    // Innermost first: after the whole marker, nothing more.
    let mut tail = String::new();
    for c in marker.chars().rev() {
        let lit = escape(c);
        tail = format!("(?:[^{lit}](?s:.)*|{lit}{tail})?");
    }
    tail
}

/// `c` as a regex literal (also inside a class).
fn escape(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '_' || c == '<' || c == '>' {
        c.to_string()
    } else if c.is_ascii_punctuation() {
        format!("\\{c}")
    } else {
        format!("\\x{{{:x}}}", c as u32)
    }
}

/// The call a finished `Choose` (or `Auto`) output names: `(name, arguments as JSON text)`,
/// the arguments under `key`; `None` when the output is not a whole call (cut by
/// `max_tokens`).
pub fn chosen_call(output: &str, key: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(output).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    Some((name, v.get(key)?.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The trigger regex as the constraint plugin reads it (regex-syntax, whole match).
    pub(crate) fn matches(re: &str, text: &str) -> bool {
        let re = regex_automata::dfa::regex::Regex::new(&format!("^(?:{re})$")).unwrap();
        re.is_match(text)
    }

    #[test]
    fn the_trigger_regex_stops_at_the_marker_or_departs_from_it() {
        let re = trigger_regex("<tool_call>");
        for ok in [
            "",
            "<",
            "<tool",
            "<tool_call>",
            "Hello",
            "<b>bold</b>",
            "<toolbox\n",
            "日本",
        ] {
            assert!(matches(&re, ok), "{ok:?}");
        }
        for refused in ["<tool_call>\n", "<tool_call>{", "<tool_call><tool_call>"] {
            assert!(!matches(&re, refused), "{refused:?}");
        }
        let re = trigger_regex("{");
        assert!(matches(&re, "{") && matches(&re, "Sure") && matches(&re, ""));
        assert!(!matches(&re, "{\"name\""));
        let re = trigger_regex("<|python_tag|>");
        assert!(matches(&re, "<|python") && matches(&re, "<|python_tag|>"));
        assert!(!matches(&re, "<|python_tag|>x"));
    }

    #[test]
    fn a_chosen_call_is_read_back() {
        assert_eq!(
            chosen_call(
                r#"{"name":"get_time","arguments":{"tz":"UTC"}}"#,
                "arguments"
            ),
            Some(("get_time".into(), r#"{"tz":"UTC"}"#.into()))
        );
        assert_eq!(chosen_call(r#"{"name":"get_ti"#, "arguments"), None);
        assert_eq!(
            chosen_call(r#"{"name":"f","parameters":{}}"#, "parameters"),
            Some(("f".into(), "{}".into()))
        );
    }
}
