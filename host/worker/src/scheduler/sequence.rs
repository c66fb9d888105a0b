//! Longer than 600 lines with its unit tests (the code is the first 275): the stop-sequence
//! hold-back and the tool-call switch are tested here against the private state they drive.
//!
//! One running sequence: a job that holds a KV-cache slot, its prefill progress, its sampler and
//! detokenizer sessions, and the text it has streamed.

use std::time::Instant;

use orcd_device::{LogitsWanted, SeqSlot};

use crate::job::{Job, JobEvent, StopReason, TokenLogprob};
use crate::plugins::{
    ConstraintSession, PluginFailure, RequestHandler, SamplerSession, StreamDecoder,
};

/// What pushing a sampled token did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Keep decoding.
    Continue,
    /// The sequence is done; send `end` with this reason.
    Finished(StopReason),
}

/// Where a `tool_choice: "auto"` output stands (`server/openai_tools.rs` has the design).
pub(crate) enum ToolPhase {
    /// Not an `auto` request.
    Off,
    /// The output so far is a prefix of the trigger's marker: held back, masked by the trigger
    /// constraint; `call` is the call's constraint, not started.
    Undecided { call: Box<dyn ConstraintSession> },
    /// Plain text: no constraint is left.
    Text,
    /// A tool call: the call's constraint masks the output, and its text goes out as
    /// `tool_call` tokens.
    Calling,
}

pub(crate) struct Sequence {
    pub job: Job,
    pub slot: SeqSlot,
    /// Prompt tokens followed by generated tokens: `(prompt_len + generated,)`.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens of `tokens` already in the KV cache.
    pub cached: usize,
    /// Prompt tokens whose KV was copied from a cached slot at admission (prefix caching).
    pub reused: usize,
    /// Positions the slot reserves (`prompt_len + max_new`).
    pub reserved: usize,
    /// Generated tokens allowed: `min(max_tokens, context - prompt_len)`.
    pub max_new: usize,
    /// Whether `max_new` was cut by the context rather than by `max_tokens`.
    pub context_bound: bool,
    pub sampler: Box<dyn SamplerSession>,
    /// The request's constraint: masks each row before the sampler reads it (with
    /// `tool_choice: "auto"`, the trigger's and then the call's, or none once it is text).
    pub constraint: Option<Box<dyn ConstraintSession>>,
    pub tool: ToolPhase,
    pub decoder: Box<dyn StreamDecoder>,
    /// Everything decoded so far (complete characters only).
    pub text: String,
    /// Bytes of `text` already sent as `token` events.
    pub emitted: usize,
    /// `token` events sent so far.
    pub token_events: u32,
    /// Log-probabilities not yet sent, each with the end of its token's text in `text`: they
    /// go out with the event that sends that text.
    pub pending_logprobs: Vec<(usize, TokenLogprob)>,
    pub admitted_at: Instant,
    pub first_token_at: Option<Instant>,
    pub last_token_at: Option<Instant>,
    pub last_metrics_at: Instant,
}

impl Sequence {
    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// The tokens this sequence contributes to a step of at most `budget` tokens, and which
    /// logits it wants back.
    pub fn step_tokens(&self, budget: usize) -> (std::ops::Range<usize>, LogitsWanted) {
        let end = (self.cached + budget).min(self.tokens.len());
        let logits = if end == self.tokens.len() {
            LogitsWanted::Last
        } else {
            LogitsWanted::None
        };
        (self.cached..end, logits)
    }

    pub fn decode_ms(&self) -> u64 {
        self.admitted_at.elapsed().as_millis() as u64
    }

    /// Append a sampled token (with its log-probabilities when the request asked for them):
    /// detokenize, look for stop sequences, stream what is safe to send. Returns whether the
    /// sequence goes on. An end-of-generation token is not output, nor its log-probability.
    pub fn push_token(
        &mut self,
        token: u32,
        end_of_generation: bool,
        logprob: Option<TokenLogprob>,
        handler: &dyn RequestHandler,
    ) -> Result<Progress, PluginFailure> {
        let now = Instant::now();
        if self.first_token_at.is_none() {
            self.first_token_at = Some(now);
            metrics::histogram!(crate::telemetry::TIME_TO_FIRST_TOKEN_MS)
                .record(ms(now - self.job.accepted_at));
        }
        if let Some(prev) = self.last_token_at {
            metrics::histogram!(crate::telemetry::INTER_TOKEN_LATENCY_MS).record(ms(now - prev));
        }
        self.last_token_at = Some(now);
        if end_of_generation {
            self.flush_text();
            return Ok(Progress::Finished(StopReason::Eos));
        }
        self.tokens.push(token);
        metrics::counter!(crate::telemetry::TOKENS_GENERATED_TOTAL).increment(1);
        let piece = self.decoder.push(token)?;
        self.text.push_str(&piece);
        if let Some(lp) = logprob {
            self.pending_logprobs.push((self.text.len(), lp));
        }
        self.decide_tool_call()?;
        if matches!(self.tool, ToolPhase::Undecided { .. }) {
            // A prefix of the marker: text or the start of a call, not known yet.
        } else if !piece.is_empty() {
            // Earlier text held no match, so a new one must end inside `piece`: only the tail
            // that can hold it goes to the handler, and the text not yet sent (text held back
            // while an `auto` output's trigger was undecided was never looked at).
            let longest = self
                .job
                .params
                .stop
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(0);
            let from = floor_char_boundary(
                &self.text,
                self.text
                    .len()
                    .saturating_sub(piece.len() + longest)
                    .min(self.emitted),
            );
            if longest > 0
                && let Some(at) = handler.find_stop(&self.text[from..], &self.job.params.stop)?
            {
                let cut = floor_char_boundary(&self.text, (from + at).max(self.emitted));
                self.text.truncate(cut);
                // Tokens whose text starts at or after the cut are not part of the output.
                self.pending_logprobs
                    .retain(|(_, lp)| (lp.offset as usize) < cut);
                self.flush_text();
                return Ok(Progress::Finished(StopReason::StopSequence));
            }
            let safe = self.text.len()
                - stop_prefix_holdback(&self.text[self.emitted..], &self.job.params.stop);
            self.send_text(safe);
        }
        if self.generated() >= self.max_new {
            self.flush_text();
            let reason = if self.context_bound {
                StopReason::ContextLength
            } else {
                StopReason::MaxTokens
            };
            return Ok(Progress::Finished(reason));
        }
        Ok(Progress::Continue)
    }

    /// `tool_choice: "auto"`: once the output is the trigger's marker, the calls' constraint
    /// takes over, given the marker's tokens first (its language begins with the marker, so
    /// the marker stays in the output: the response layer reads the calls out of it); once
    /// the output departs from the marker, it is text and nothing masks it. The trigger
    /// constraint makes the marker end on a token boundary, and `text` never runs ahead of the
    /// output's bytes, so both tests are exact.
    fn decide_tool_call(&mut self) -> Result<(), PluginFailure> {
        if !matches!(self.tool, ToolPhase::Undecided { .. }) {
            return Ok(());
        }
        let Some(trigger) = &self.job.params.tool_trigger else {
            return Ok(());
        };
        if self.text == trigger.marker {
            if let ToolPhase::Undecided { mut call } =
                std::mem::replace(&mut self.tool, ToolPhase::Calling)
            {
                for &t in &self.tokens[self.prompt_len..] {
                    call.advance(t)?;
                }
                self.constraint = Some(call);
            }
        } else if !trigger.marker.starts_with(self.text.as_str()) {
            self.tool = ToolPhase::Text;
            self.constraint = None;
        }
        Ok(())
    }

    /// Send everything decoded and not yet sent (at the end of a generation), with every
    /// log-probability still held (a token cut by a stop sequence included).
    fn flush_text(&mut self) {
        let len = self.text.len();
        for (end, _) in &mut self.pending_logprobs {
            *end = (*end).min(len);
        }
        self.send_text(len);
    }

    /// Send the text up to `upto`, with the log-probabilities of the tokens it completes.
    fn send_text(&mut self, upto: usize) {
        let done = self
            .pending_logprobs
            .iter()
            .take_while(|(end, _)| *end <= upto)
            .count();
        if upto > self.emitted || done > 0 {
            let t = self.text[self.emitted..upto].to_string();
            self.emitted = upto;
            let i = self.token_events;
            self.token_events += 1;
            let logprobs = self
                .pending_logprobs
                .drain(..done)
                .map(|(_, lp)| lp)
                .collect();
            // A closed receiver means the client went away; the scheduler notices it through
            // `events.is_closed()` before the next step.
            let tool_call = matches!(self.tool, ToolPhase::Calling);
            let _ = self.job.events.send(JobEvent::Token {
                t,
                i,
                logprobs,
                tool_call,
            });
        }
    }
}

/// Bytes at the end of `unsent` to hold back because they could be the start of a stop
/// sequence that the next tokens complete.
fn stop_prefix_holdback(unsent: &str, stops: &[String]) -> usize {
    let mut hold = 0;
    for (start, _) in unsent.char_indices() {
        let tail = &unsent[start..];
        if tail.len() <= hold {
            break;
        }
        if stops
            .iter()
            .any(|s| s.len() > tail.len() && s.starts_with(tail))
        {
            hold = tail.len();
            break;
        }
    }
    hold
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code::ErrorCode;
    use crate::job::{CancelFlag, GenParams};
    use crate::plugins::{ExecuteRequest, InvalidField, RequestLimits};

    /// Token `i` decodes to `PIECES[i]`.
    const PIECES: [&str; 6] = ["Hel", "lo", " wo", "rld", "!", " END"];

    struct Pieces;
    impl StreamDecoder for Pieces {
        fn push(&mut self, token: u32) -> Result<String, PluginFailure> {
            Ok(PIECES[token as usize].to_string())
        }
    }

    struct NoSampler;
    impl SamplerSession for NoSampler {
        fn sample(
            &mut self,
            _: &mut dyn orcd_device::Device,
            _: usize,
            _: &[u32],
        ) -> Result<u32, PluginFailure> {
            Err(PluginFailure {
                code: ErrorCode::Internal,
                plugin: "test".into(),
                message: "not used".into(),
            })
        }
    }

    /// `find_stop` as the handler contract says: the earliest match in the text.
    struct FindStop;
    impl RequestHandler for FindStop {
        fn parse_execute(
            &self,
            _: &[u8],
            _: Option<&str>,
            _: &RequestLimits,
        ) -> Result<Result<ExecuteRequest, InvalidField>, PluginFailure> {
            unreachable!("not used")
        }
        fn find_stop(&self, text: &str, stops: &[String]) -> Result<Option<usize>, PluginFailure> {
            Ok(stops.iter().filter_map(|s| text.find(s.as_str())).min())
        }
        fn render_event(&self, _: &JobEvent) -> Result<String, PluginFailure> {
            unreachable!("not used")
        }
    }

    fn sequence(
        stop: &[&str],
        max_new: usize,
    ) -> (Sequence, tokio::sync::mpsc::UnboundedReceiver<JobEvent>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let now = Instant::now();
        let job = Job {
            id: "t".into(),
            prompt_tokens: vec![],
            params: GenParams {
                stop: stop.iter().map(|s| s.to_string()).collect(),
                ..GenParams::default()
            },
            seed: 1,
            cancel: CancelFlag::default(),
            accepted_at: now,
            events: tx,
            constraint: None,
            trigger: None,
            shares_prompt_of: None,
        };
        let seq = Sequence {
            job,
            slot: orcd_device::SeqSlot(0),
            tokens: vec![9],
            prompt_len: 1,
            cached: 1,
            reused: 0,
            reserved: 1 + max_new,
            max_new,
            context_bound: false,
            sampler: Box::new(NoSampler),
            constraint: None,
            tool: ToolPhase::Off,
            decoder: Box::new(Pieces),
            text: String::new(),
            emitted: 0,
            token_events: 0,
            pending_logprobs: Vec::new(),
            admitted_at: now,
            first_token_at: None,
            last_token_at: None,
            last_metrics_at: now,
        };
        (seq, rx)
    }

    fn sent(rx: &mut tokio::sync::mpsc::UnboundedReceiver<JobEvent>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(JobEvent::Token { t, .. }) = rx.try_recv() {
            out.push(t);
        }
        out
    }

    #[test]
    fn a_stop_split_across_tokens_is_never_streamed() {
        // "lo wo" spans tokens 1 and 2: "lo" must be held back until the match is known.
        let (mut seq, mut rx) = sequence(&["lo wo"], 10);
        assert_eq!(
            seq.push_token(0, false, None, &FindStop).unwrap(),
            Progress::Continue
        );
        assert_eq!(
            seq.push_token(1, false, None, &FindStop).unwrap(),
            Progress::Continue
        );
        // "l" and then "lo" could each start the stop: only "Hel" is out.
        assert_eq!(sent(&mut rx).concat(), "Hel");
        assert_eq!(
            seq.push_token(2, false, None, &FindStop).unwrap(),
            Progress::Finished(StopReason::StopSequence)
        );
        assert_eq!(sent(&mut rx), Vec::<String>::new());
        assert_eq!(seq.text, "Hel");
    }

    #[test]
    fn held_back_text_is_released_when_the_stop_does_not_complete() {
        let (mut seq, mut rx) = sequence(&[" wonder"], 4);
        for t in 0..3 {
            assert_eq!(
                seq.push_token(t, false, None, &FindStop).unwrap(),
                Progress::Continue
            );
        }
        // " wo" could start " wonder": held.
        assert_eq!(sent(&mut rx).concat(), "Hello");
        // max_new reached: everything decoded goes out.
        assert_eq!(
            seq.push_token(3, false, None, &FindStop).unwrap(),
            Progress::Finished(StopReason::MaxTokens)
        );
        assert_eq!(sent(&mut rx).concat(), " world");
    }

    #[test]
    fn end_of_generation_flushes_and_is_not_counted() {
        let (mut seq, mut rx) = sequence(&[], 10);
        seq.push_token(0, false, None, &FindStop).unwrap();
        assert_eq!(
            seq.push_token(5, true, None, &FindStop).unwrap(),
            Progress::Finished(StopReason::Eos)
        );
        assert_eq!(seq.generated(), 1);
        assert_eq!(sent(&mut rx).concat(), "Hel");
    }

    fn lp(id: u32, offset: usize) -> Option<TokenLogprob> {
        Some(TokenLogprob {
            id,
            logprob: -(id as f32),
            top: vec![],
            offset: offset as u32,
        })
    }

    /// (text, ids of the log-probabilities) of each `token` event sent so far.
    fn sent_with_logprobs(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<JobEvent>,
    ) -> Vec<(String, Vec<u32>)> {
        let mut out = Vec::new();
        while let Ok(JobEvent::Token { t, logprobs, .. }) = rx.try_recv() {
            out.push((t, logprobs.iter().map(|l| l.id).collect()));
        }
        out
    }

    #[test]
    fn logprobs_ride_with_their_text_and_end_at_a_stop() {
        // The "l" ending "Hel" could start the stop "lo wo": held back, and token 0's
        // log-probability with it until its text is out.
        let (mut seq, mut rx) = sequence(&["lo wo"], 10);
        seq.push_token(0, false, lp(0, 0), &FindStop).unwrap();
        seq.push_token(1, false, lp(1, 3), &FindStop).unwrap();
        assert_eq!(
            sent_with_logprobs(&mut rx),
            vec![("He".into(), vec![]), ("l".into(), vec![0])]
        );
        assert_eq!(
            seq.push_token(2, false, lp(2, 5), &FindStop).unwrap(),
            Progress::Finished(StopReason::StopSequence)
        );
        // The cut falls where token 1's text starts: token 1 made no output.
        assert_eq!(sent_with_logprobs(&mut rx), vec![]);
        let (mut seq, mut rx) = sequence(&[" wo"], 10);
        for (t, off) in [(0, 0), (1, 3), (2, 5)] {
            seq.push_token(t, false, lp(t, off), &FindStop).unwrap();
        }
        let got = sent_with_logprobs(&mut rx);
        assert_eq!(
            got,
            vec![("Hel".into(), vec![0]), ("lo".into(), vec![1])],
            "the stop's token is dropped"
        );
        // End of generation: its own log-probability is not reported.
        let (mut seq, mut rx) = sequence(&[], 10);
        seq.push_token(4, false, lp(4, 0), &FindStop).unwrap();
        seq.push_token(5, true, lp(5, 1), &FindStop).unwrap();
        assert_eq!(sent_with_logprobs(&mut rx), vec![("!".into(), vec![4])]);
    }

    #[test]
    fn holds_back_a_possible_stop_prefix() {
        let stops = vec!["\n\nUser:".to_string(), "END".to_string()];
        assert_eq!(stop_prefix_holdback("hello\n\nUs", &stops), 4);
        assert_eq!(stop_prefix_holdback("hello EN", &stops), 2);
        assert_eq!(stop_prefix_holdback("hello", &stops), 0);
        assert_eq!(stop_prefix_holdback("héllo", &[]), 0);
        assert_eq!(
            stop_prefix_holdback("日本", &["本当".to_string()]),
            "本".len()
        );
    }

    #[test]
    fn floor_char_boundary_never_splits_a_character() {
        let s = "a日b";
        assert_eq!(floor_char_boundary(s, 2), 1);
        assert_eq!(floor_char_boundary(s, 4), 4);
        assert_eq!(floor_char_boundary(s, 99), s.len());
    }

    /// Token `i` decodes to `self.0[i]`.
    struct Table(&'static [&'static str]);
    impl StreamDecoder for Table {
        fn push(&mut self, token: u32) -> Result<String, PluginFailure> {
            Ok(self.0[token as usize].to_string())
        }
    }

    /// A constraint that allows everything and records the tokens it is given.
    struct Recording(std::sync::Arc<std::sync::Mutex<Vec<u32>>>);
    impl ConstraintSession for Recording {
        fn allowed(&mut self, _: u32) -> Result<Vec<u32>, PluginFailure> {
            Ok(vec![u32::MAX])
        }
        fn advance(&mut self, token: u32) -> Result<(), PluginFailure> {
            self.0.lock().unwrap().push(token);
            Ok(())
        }
    }

    type Log = std::sync::Arc<std::sync::Mutex<Vec<u32>>>;

    /// An `auto` sequence whose tokens decode to `pieces`; the log of its call's constraint.
    fn auto_sequence(
        marker: &str,
        pieces: &'static [&'static str],
    ) -> (
        Sequence,
        tokio::sync::mpsc::UnboundedReceiver<JobEvent>,
        Log,
    ) {
        let (mut seq, rx) = sequence(&[], 10);
        seq.decoder = Box::new(Table(pieces));
        seq.job.params.tool_trigger = Some(crate::job::ToolTrigger {
            marker: marker.into(),
            regex: String::new(),
        });
        let log = Log::default();
        seq.constraint = Some(Box::new(Recording(Log::default())));
        seq.tool = ToolPhase::Undecided {
            call: Box::new(Recording(log.clone())),
        };
        (seq, rx, log)
    }

    /// (text, tool_call) of each `token` event sent so far.
    fn sent_calls(rx: &mut tokio::sync::mpsc::UnboundedReceiver<JobEvent>) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        while let Ok(JobEvent::Token { t, tool_call, .. }) = rx.try_recv() {
            out.push((t, tool_call));
        }
        out
    }

    #[test]
    fn an_auto_output_on_the_marker_becomes_a_call_that_keeps_it() {
        let (mut seq, mut rx, log) =
            auto_sequence("<tool_call>", &["<tool", "_call>", "{\"a\"", ":1}"]);
        seq.push_token(0, false, None, &FindStop).unwrap();
        assert_eq!(
            sent_calls(&mut rx),
            vec![],
            "a prefix of the marker is held"
        );
        assert!(log.lock().unwrap().is_empty(), "the call waits");
        seq.push_token(1, false, None, &FindStop).unwrap();
        assert!(matches!(seq.tool, ToolPhase::Calling));
        assert_eq!(
            *log.lock().unwrap(),
            vec![0, 1],
            "the marker's tokens, replayed to the calls' constraint"
        );
        seq.push_token(2, false, None, &FindStop).unwrap();
        seq.push_token(3, false, None, &FindStop).unwrap();
        let sent = sent_calls(&mut rx);
        assert!(sent.iter().all(|(_, call)| *call), "{sent:?}");
        let text: String = sent.into_iter().map(|(t, _)| t).collect();
        assert_eq!(text, "<tool_call>{\"a\":1}");
    }

    #[test]
    fn an_auto_output_that_departs_from_the_marker_is_text_unmasked() {
        let (mut seq, mut rx, _) = auto_sequence("<tool_call>", &["<tool", "_response>"]);
        seq.push_token(0, false, None, &FindStop).unwrap();
        assert_eq!(sent_calls(&mut rx), vec![]);
        seq.push_token(1, false, None, &FindStop).unwrap();
        assert!(matches!(seq.tool, ToolPhase::Text) && seq.constraint.is_none());
        assert_eq!(
            sent_calls(&mut rx),
            vec![("<tool_response>".to_string(), false)]
        );
        // Ending while undecided: what was held is text.
        let (mut seq, mut rx, _) = auto_sequence("<tool_call>", &["<tool", ""]);
        seq.push_token(0, false, None, &FindStop).unwrap();
        assert_eq!(
            seq.push_token(1, true, None, &FindStop).unwrap(),
            Progress::Finished(StopReason::Eos)
        );
        assert_eq!(sent_calls(&mut rx), vec![("<tool".to_string(), false)]);
    }

    #[test]
    fn a_marker_that_opens_the_call_is_given_to_the_calls_constraint() {
        let (mut seq, mut rx, log) = auto_sequence("{", &["{", "\"a\":1}"]);
        seq.push_token(0, false, None, &FindStop).unwrap();
        assert!(matches!(seq.tool, ToolPhase::Calling));
        assert_eq!(
            *log.lock().unwrap(),
            vec![0],
            "the marker's token, replayed"
        );
        seq.push_token(1, false, None, &FindStop).unwrap();
        let sent = sent_calls(&mut rx);
        assert!(sent.iter().all(|(_, call)| *call), "{sent:?}");
        let text: String = sent.into_iter().map(|(t, _)| t).collect();
        assert_eq!(text, "{\"a\":1}");
    }
}
