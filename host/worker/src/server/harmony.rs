//! GPT-OSS's harmony output format, split into what an OpenAI client reads. The model answers
//! in messages: `<|channel|>analysis<|message|>...<|end|>` (its reasoning), then
//! `<|start|>assistant<|channel|>final<|message|>...` ending with `<|return|>` (the answer; an
//! end-of-generation token, so it never reaches the text). As llama.cpp's server does, the
//! `analysis` channel becomes `reasoning_content` and the `final` channel (and a `commentary`
//! message addressed to no one, a preamble) becomes `content`. The markup tokens
//! (`<|channel|>`, `<|message|>`, `<|start|>`, `<|end|>`) are rendered into the token text for
//! this (llama.cpp marks them user-defined), and [`HarmonySplitter`] reads them out of it as the
//! text streams in, holding back only what could still be the start of a tag.
//!
//! What is not harmony passes through: an output that does not open with a message header is
//! all `content`, and so is text after a message that does not open another. A message
//! addressed to a tool (`to=functions.x`, a tool call) is `content` verbatim, header included:
//! tool calls in this format are refused at the request (see `openai::chat_completions`), so
//! such a message only comes with `tool_choice: "none"`, and the client sees what the model
//! wrote. A header cut short by `max_tokens` is dropped (it is markup, and `finish_reason` says
//! `length`).

/// Where a piece of the model's text goes in the OpenAI answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `reasoning_content` (the `analysis` channel).
    Reasoning,
    /// `content` (the `final` channel, preambles, and text outside harmony messages).
    Content,
}

const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
/// Tags that end a message's body.
const ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];
/// Longest message header read (`<|start|>assistant to=functions.name<|channel|>commentary
/// <|constrain|>json<|message|>` is well below it); a longer one is not harmony.
const MAX_HEADER_BYTES: usize = 512;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// Nothing read yet: a header or plain text.
    Start,
    /// Inside a header, up to `<|message|>`.
    Header,
    /// Inside a message's body, going to `to`.
    Body { to: Channel },
    /// After a message's end: `<|start|>` and the next header, or plain text.
    Between,
    /// Not harmony: everything is content.
    Plain,
}

/// Splits a streamed harmony answer into reasoning and content deltas.
#[derive(Debug)]
pub struct HarmonySplitter {
    state: State,
    /// Text read but not yet passed on (a header, or what may be the start of a tag).
    pending: String,
}

impl Default for HarmonySplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl HarmonySplitter {
    pub fn new() -> HarmonySplitter {
        HarmonySplitter {
            state: State::Start,
            pending: String::new(),
        }
    }

    /// Reads the next piece of the model's text; returns the deltas it completes, in order
    /// (consecutive pieces of one channel joined).
    pub fn push(&mut self, text: &str) -> Vec<(Channel, String)> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        while self.step(&mut out) {}
        out
    }

    /// The end of the output: what is still held back goes out (a body's tail, or text that
    /// might have opened a header), except an unfinished header.
    pub fn finish(&mut self) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Body { to } => emit(&mut out, to, &rest),
            State::Start | State::Between | State::Plain => emit(&mut out, Channel::Content, &rest),
            State::Header => {}
        }
        out
    }

    /// One transition on `pending`; false when more text is needed.
    fn step(&mut self, out: &mut Vec<(Channel, String)>) -> bool {
        match self.state {
            State::Start | State::Between => {
                let p = self.pending.as_str();
                if p.starts_with(START) || p.starts_with(CHANNEL) {
                    self.state = State::Header;
                    true
                } else if p.is_empty() || START.starts_with(p) || CHANNEL.starts_with(p) {
                    false
                } else {
                    self.state = State::Plain;
                    true
                }
            }
            State::Header => {
                let Some(at) = self.pending.find(MESSAGE) else {
                    if self.pending.len() > MAX_HEADER_BYTES {
                        self.state = State::Plain;
                        return true;
                    }
                    return false;
                };
                let header = self.pending[..at].to_string();
                let body_start = at + MESSAGE.len();
                let to = if header.contains(" to=") || header.starts_with("to=") {
                    // A tool-addressed message: passed on as written.
                    emit(out, Channel::Content, &self.pending[..body_start]);
                    Channel::Content
                } else {
                    match channel_name(&header) {
                        Some("analysis") => Channel::Reasoning,
                        _ => Channel::Content,
                    }
                };
                self.pending.drain(..body_start);
                self.state = State::Body { to };
                true
            }
            State::Body { to } => {
                let end = ENDS
                    .iter()
                    .filter_map(|tag| self.pending.find(tag).map(|at| (at, tag.len())))
                    .min();
                match end {
                    Some((at, len)) => {
                        emit(out, to, &self.pending[..at]);
                        self.pending.drain(..at + len);
                        self.state = State::Between;
                        true
                    }
                    None => {
                        // Keep a tail that may be the start of an end tag.
                        let keep = held_tail(&self.pending);
                        let cut = self.pending.len() - keep;
                        emit(out, to, &self.pending[..cut]);
                        self.pending.drain(..cut);
                        false
                    }
                }
            }
            State::Plain => {
                let rest = std::mem::take(&mut self.pending);
                emit(out, Channel::Content, &rest);
                false
            }
        }
    }
}

/// The channel a header names: the word after its last `<|channel|>`.
fn channel_name(header: &str) -> Option<&str> {
    let at = header.rfind(CHANNEL)? + CHANNEL.len();
    let rest = &header[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Bytes at the end of `s` that are a proper start of an end tag (`<`, `<|e`, `<|retur`, ...).
fn held_tail(s: &str) -> usize {
    let Some(at) = s.rfind('<') else {
        return 0;
    };
    let tail = &s[at..];
    if ENDS
        .iter()
        .any(|t| t.starts_with(tail) && t.len() > tail.len())
    {
        tail.len()
    } else {
        0
    }
}

/// Appends `text` to `out`, joined to the last delta when that went to the same channel.
fn emit(out: &mut Vec<(Channel, String)>, to: Channel, text: &str) {
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some((c, s)) if *c == to => s.push_str(text),
        _ => out.push((to, text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one at a time, then finishes; returns (reasoning, content).
    fn split(pieces: &[&str]) -> (String, String) {
        let mut s = HarmonySplitter::new();
        let mut reasoning = String::new();
        let mut content = String::new();
        let mut all: Vec<(Channel, String)> = Vec::new();
        for p in pieces {
            all.extend(s.push(p));
        }
        all.extend(s.finish());
        for (c, t) in all {
            match c {
                Channel::Reasoning => reasoning.push_str(&t),
                Channel::Content => content.push_str(&t),
            }
        }
        (reasoning, content)
    }

    const REPLY: &str = "<|channel|>analysis<|message|>User says hi. Reply politely.<|end|><|start|>assistant<|channel|>final<|message|>Hello! <3 How can I help?";

    #[test]
    fn analysis_is_reasoning_and_final_is_content() {
        let (r, c) = split(&[REPLY]);
        assert_eq!(r, "User says hi. Reply politely.");
        assert_eq!(c, "Hello! <3 How can I help?");
    }

    #[test]
    fn any_cut_of_the_stream_gives_the_same_split() {
        let whole = split(&[REPLY]);
        for (i, _) in REPLY.char_indices().skip(1) {
            assert_eq!(split(&[&REPLY[..i], &REPLY[i..]]), whole, "cut at {i}");
        }
        let chars: Vec<String> = REPLY.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(&pieces), whole);
    }

    #[test]
    fn a_body_never_passes_on_a_partial_end_tag() {
        let mut s = HarmonySplitter::new();
        assert_eq!(
            s.push("<|channel|>final<|message|>a <|e"),
            vec![(Channel::Content, "a ".to_string())]
        );
        assert_eq!(s.push("nd|>"), vec![]);
        // A `<` that turns out not to be a tag goes out.
        let mut s = HarmonySplitter::new();
        s.push("<|channel|>final<|message|>x <");
        assert_eq!(s.push("b"), vec![(Channel::Content, "<b".to_string())]);
    }

    #[test]
    fn the_return_tag_ends_the_answer() {
        assert_eq!(
            split(&["<|channel|>final<|message|>done<|return|>"]),
            (String::new(), "done".to_string())
        );
    }

    #[test]
    fn plain_text_is_content() {
        assert_eq!(
            split(&["Just ", "text <|end|> here"]),
            (String::new(), "Just text <|end|> here".to_string())
        );
        assert_eq!(split(&["<"]), (String::new(), "<".to_string()));
        assert_eq!(split(&["<b>"]), (String::new(), "<b>".to_string()));
    }

    #[test]
    fn commentary_preamble_is_content_and_a_tool_message_is_passed_on_verbatim() {
        assert_eq!(
            split(&["<|channel|>commentary<|message|>Let me check.<|end|>"]),
            (String::new(), "Let me check.".to_string())
        );
        let call = "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\":\"Paris\"}";
        assert_eq!(
            split(&[call]),
            (
                "Need weather.".to_string(),
                "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\":\"Paris\"}".to_string()
            )
        );
    }

    #[test]
    fn an_unfinished_header_is_dropped_and_a_long_one_is_not_harmony() {
        assert_eq!(
            split(&["<|channel|>analysis<|message|>think<|end|><|start|>assistant<|chan"]),
            ("think".to_string(), String::new())
        );
        let long = format!("<|channel|>{}", "x".repeat(MAX_HEADER_BYTES));
        assert_eq!(split(&[&long]), (String::new(), long.clone()));
    }
}
