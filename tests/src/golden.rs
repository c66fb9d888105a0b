//! The real test models and llama.cpp's golden outputs for them, and the checks every backend
//! must pass against those outputs (see `../shared/reference/README.md` for the rule).

use std::path::PathBuf;

use orcd_device::decode::greedy_generate;
use orcd_device::{Device, LogitsWanted, SeqInput};
use serde_json::Value;

use crate::models::fetch_model;
pub use crate::models::{reference_dir, repo_root};

/// A `top2_margins` entry below this is a near tie: a step where another engine may pick the
/// runner-up (README: an exact engine differs only where llama.cpp's best two are within 0.27).
pub const NEAR_TIE: f32 = 0.3;

/// The two real models of the test suite.
#[derive(Copy, Clone, Debug)]
pub enum TestModel {
    SmolLm2,
    Gemma3,
}

impl TestModel {
    fn script_arg(self) -> &'static str {
        match self {
            TestModel::SmolLm2 => "smollm2",
            TestModel::Gemma3 => "gemma3",
        }
    }

    /// The golden file of this model, under the shared reference folder.
    pub fn reference_file(self) -> &'static str {
        match self {
            TestModel::SmolLm2 => "smollm2-135m-instruct-q4_1.greedy.json",
            TestModel::Gemma3 => "gemma3-270m-q4_k_m.greedy.json",
        }
    }

    /// The model file, fetched (and verified) by `scripts/fetch-models.sh` when missing.
    pub fn path(self) -> PathBuf {
        fetch_model(self.script_arg())
    }

    /// The golden cases of this model.
    pub fn cases(self) -> Vec<GoldenCase> {
        let path = reference_dir().join(self.reference_file());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text).expect("golden JSON");
        v["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(GoldenCase::from_json)
            .collect()
    }
}

/// One prompt of a golden file.
#[derive(Clone, Debug)]
pub struct GoldenCase {
    pub prompt: String,
    pub prompt_tokens: Vec<u32>,
    /// llama.cpp's greedy continuation.
    pub greedy_tokens: Vec<u32>,
    /// At each generated step, llama.cpp's best logit minus its second best.
    pub top2_margins: Vec<f32>,
    /// (id, logit) of llama.cpp's ten best at the first generated position.
    pub first_step_top10: Vec<(u32, f32)>,
}

impl GoldenCase {
    fn from_json(v: &Value) -> GoldenCase {
        let ids = |k: &str| -> Vec<u32> {
            v[k].as_array()
                .unwrap_or_else(|| panic!("{k}"))
                .iter()
                .map(|x| x.as_u64().expect("token id") as u32)
                .collect()
        };
        GoldenCase {
            prompt: v["prompt"].as_str().unwrap_or_default().to_string(),
            prompt_tokens: ids("prompt_tokens"),
            greedy_tokens: ids("greedy_tokens"),
            top2_margins: v["top2_margins"]
                .as_array()
                .expect("top2_margins")
                .iter()
                .map(|x| x.as_f64().expect("margin") as f32)
                .collect(),
            first_step_top10: v["first_step_top10"]
                .as_array()
                .expect("first_step_top10")
                .iter()
                .map(|p| {
                    (
                        p[0].as_u64().expect("id") as u32,
                        p[1].as_f64().expect("logit") as f32,
                    )
                })
                .collect(),
        }
    }

    /// Index of the first near-tie step, if any.
    pub fn first_near_tie(&self) -> Option<usize> {
        self.top2_margins.iter().position(|&m| m < NEAR_TIE)
    }
}

/// What a teacher-forced run of one case found.
#[derive(Clone, Debug, Default)]
pub struct TeacherForced {
    /// Steps whose argmax differs from llama.cpp's token although the margin was clear.
    pub clear_mismatches: Vec<usize>,
    /// Steps whose argmax differs at a near tie (allowed).
    pub near_tie_mismatches: Vec<usize>,
    /// Largest |ours - llama.cpp| over the first step's top-10 logits.
    pub first_step_max_diff: f32,
}

/// Feed the prompt and llama.cpp's own greedy tokens, and compare the argmax at every generated
/// step, plus the first step's top-10 logits. The prompt prefix goes in a step without logits,
/// the rest in one `All` step.
pub fn teacher_forced(dev: &mut dyn Device, case: &GoldenCase) -> TeacherForced {
    let p = case.prompt_tokens.len();
    let mut ids = case.prompt_tokens.clone();
    ids.extend(&case.greedy_tokens[..case.greedy_tokens.len() - 1]);
    let slot = dev.alloc_seq(ids.len()).expect("alloc");
    if p > 1 {
        dev.forward(&[SeqInput {
            slot,
            start_pos: 0,
            tokens: &ids[..p - 1],
            logits: LogitsWanted::None,
        }])
        .expect("prefix step");
    }
    let rows = dev
        .forward(&[SeqInput {
            slot,
            start_pos: p - 1,
            tokens: &ids[p - 1..],
            logits: LogitsWanted::All,
        }])
        .expect("scored step");
    assert_eq!(rows, case.greedy_tokens.len());
    let mut report = TeacherForced::default();
    for (i, &want) in case.greedy_tokens.iter().enumerate() {
        let (got, _) = dev.logits_argmax(i).expect("argmax");
        if got != want {
            if case.top2_margins[i] < NEAR_TIE {
                report.near_tie_mismatches.push(i);
            } else {
                report.clear_mismatches.push(i);
            }
        }
    }
    let row = dev.logits_row(0).expect("row");
    report.first_step_max_diff = case
        .first_step_top10
        .iter()
        .map(|&(id, logit)| (row[id as usize] - logit).abs())
        .fold(0.0, f32::max);
    dev.free_seq(slot);
    report
}

/// Free-running greedy generation; returns the tokens and whether they agree with llama.cpp's
/// up to (not including) the first near tie.
pub fn free_running(dev: &mut dyn Device, case: &GoldenCase) -> (Vec<u32>, bool) {
    let n = case.greedy_tokens.len();
    let got = greedy_generate(dev, &case.prompt_tokens, n, &[])
        .expect("generate")
        .tokens;
    let agree_until = case.first_near_tie().unwrap_or(n);
    let ok = got[..agree_until.min(got.len())] == case.greedy_tokens[..agree_until];
    (got, ok)
}
