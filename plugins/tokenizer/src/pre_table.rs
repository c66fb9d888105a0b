//! llama.cpp's pre-tokenizers, as data: for each `tokenizer.ggml.pre` name, the regexes that
//! cut text into words (applied in order, each cutting the pieces of the previous one), whether
//! a word that is a token as a whole skips the merges, and whether the vocabulary is byte-level
//! or SentencePiece-style BPE. The regex strings are llama.cpp's (`llm_tokenizer_bpe`'s
//! constructor in `src/llama-vocab.cpp` of llama-cpp-python 0.3.36), character for character:
//! the splitter recognises the ones llama.cpp runs by hand-written code by the same text.

/// One pre-tokenizer of llama.cpp (`LLAMA_VOCAB_PRE_TYPE_*`).
#[derive(Debug)]
pub struct PreSpec {
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_*` name, for messages.
    pub kind: &'static str,
    /// The `tokenizer.ggml.pre` values that select it.
    pub names: &'static [&'static str],
    /// The regexes, in order.
    pub regexes: &'static [&'static str],
    /// A word that is a token as a whole skips the merges (llama.cpp's `ignore_merges`).
    pub ignore_merges: bool,
    /// SentencePiece-style BPE: spaces become `▁` before splitting and token texts are raw
    /// UTF-8 (llama.cpp's `escape_whitespaces` and `byte_encode = false`); otherwise GPT-2's
    /// byte-level encoding.
    pub spm_style: bool,
}

/// GPT-2's word regex (hand-written splitter in llama.cpp).
pub const GPT2: &str =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
/// Llama 3's word regex, case-insensitive contractions spelled out (hand-written splitter).
pub const LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/// Llama 3's regex as tokenizer.json writes it (also a hand-written splitter in llama.cpp).
pub const LLAMA3_ORIGINAL: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/// Qwen2: Llama 3 with single digits (hand-written splitter).
pub const QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/// Qwen3.5: Qwen2 with combining marks inside letter runs (hand-written splitter).
pub const QWEN35: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/// Kimi K2's trigger: llama.cpp's hand-written splitter runs K2's whole regex.
pub const KIMI_K2: &str = "\\p{Han}+";
/// AFMoE's digit grouping (hand-written splitter; not a real regex).
pub const AFMOE_DIGITS: &str = "\\p{AFMoE_digits}";
/// Tiny Aya's digit grouping, run by the AFMoE splitter in llama.cpp.
pub const TINY_AYA_DIGITS: &str = "\\d{1,3}(?=(?:\\d{3})*\\b)";
/// Runs of non-newlines and runs of newlines (hand-written splitter).
pub const NEWLINES: &str = "[^\\n]+|[\\n]+";

const STARCODER: &[&str] = &["\\p{N}", GPT2];
const DEEPSEEK3: &[&str] = &[
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];
const BLOOM: &str = " ?[^(\\s|.,!?…。，、।۔،)]+";
const GPT4O: &str = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Shorthand for a byte-level entry.
const fn bpe(
    kind: &'static str,
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    ignore_merges: bool,
) -> PreSpec {
    PreSpec {
        kind,
        names,
        regexes,
        ignore_merges,
        spm_style: false,
    }
}

/// Every pre-tokenizer llama.cpp knows for byte-level and SentencePiece-style BPE, in
/// llama.cpp's order. Left out (a typed error names them): `whitespace` (a tokenizer model of
/// its own, an embedding model) and the encoders that append a SEP token (`jina-v1-en`,
/// `jina-v2-code`, `roberta-bpe`).
pub const PRE_TOKENIZERS: &[PreSpec] = &[
    bpe(
        "DEFAULT",
        &["", "default"],
        &[
            "[\\p{P}\\$\\+<=>\\^~\\|]+",
            GPT2,
            "\\p{N}+",
            "[0-9][0-9][0-9]",
        ],
        false,
    ),
    bpe(
        "LLAMA3",
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        &[LLAMA3],
        true,
    ),
    bpe(
        "JAIS2",
        &["jais-2"],
        &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
        ],
        false,
    ),
    bpe("DBRX", &["dbrx"], &[LLAMA3], false),
    bpe("SMAUG", &["smaug-bpe"], &[LLAMA3], false),
    bpe(
        "DEEPSEEK_LLM",
        &["deepseek-llm"],
        &[
            "[\r\n]",
            "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
            "\\s+$",
            "[一-龥ࠀ-一가-퟿]+",
            "\\p{N}+",
        ],
        false,
    ),
    bpe("DEEPSEEK3_LLM", &["deepseek-v3"], DEEPSEEK3, false),
    bpe("HUNYUAN_DENSE", &["hunyuan-dense"], DEEPSEEK3, false),
    bpe("JOYAI_LLM", &["joyai-llm"], DEEPSEEK3, false),
    bpe("HY_V4", &["hy_v4"], DEEPSEEK3, false),
    bpe(
        "SPARK2_5",
        &["spark2_5"],
        &[
            "\\p{N}{1,3}",
            "[一-龥぀-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
            "\\p{N}",
        ],
        false,
    ),
    bpe(
        "YOUTU",
        &["youtu"],
        &[
            "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        true,
    ),
    bpe(
        "DEEPSEEK_CODER",
        &["deepseek-coder"],
        &[
            "[\r\n]",
            "\\s?\\p{L}+",
            "\\s?\\p{P}+",
            "[一-龥ࠀ-一가-퟿]+",
            "\\p{N}",
        ],
        false,
    ),
    bpe(
        "FALCON",
        &["falcon"],
        &["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"],
        false,
    ),
    bpe("MPT", &["mpt"], &[GPT2], false),
    bpe("STARCODER", &["starcoder"], STARCODER, false),
    bpe(
        "GPT2",
        &[
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
        ],
        &[GPT2],
        false,
    ),
    PreSpec {
        kind: "GEMMA4",
        names: &["gemma4", "granite-embed-multi-311m"],
        regexes: &[NEWLINES],
        ignore_merges: false,
        spm_style: true,
    },
    PreSpec {
        kind: "SARVAM_MOE",
        names: &["sarvam-moe"],
        regexes: &[NEWLINES],
        ignore_merges: false,
        spm_style: true,
    },
    bpe("REFACT", &["refact"], STARCODER, false),
    bpe("COMMAND_R", &["command-r"], STARCODER, false),
    bpe(
        "QWEN2",
        &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"],
        &[QWEN2],
        false,
    ),
    bpe("QWEN35", &["qwen35"], &[QWEN35], false),
    bpe("STABLELM2", &["stablelm2"], &[QWEN2], false),
    bpe("OLMO", &["olmo"], &[GPT2], false),
    bpe("PORO", &["poro-chat"], &[BLOOM], false),
    bpe("CHATGLM4", &["chatglm-bpe"], &[LLAMA3], false),
    bpe("CHATGLM4", &["glm4", "glm5"], &[LLAMA3], true),
    bpe("VIKING", &["viking"], &[BLOOM, "\\p{N}"], false),
    bpe("JAIS", &["jais"], &[GPT2], false),
    bpe(
        "TEKKEN",
        &["tekken"],
        &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        true,
    ),
    bpe("SMOLLM", &["smollm"], STARCODER, false),
    bpe("CODESHELL", &["codeshell"], STARCODER, false),
    bpe("BLOOM", &["bloom"], &[BLOOM], false),
    bpe("GPT3_FINNISH", &["gpt3-finnish"], &[BLOOM], false),
    bpe("EXAONE", &["exaone"], STARCODER, false),
    bpe(
        "EXAONE_MOE",
        &["exaone-moe"],
        &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        ],
        false,
    ),
    bpe(
        "CHAMELEON",
        &["chameleon"],
        &[
            "<sentinel:[0-9]+>",
            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            "([\\t\\n]|    |  )",
            "\\p{N}",
            "[\\p{P}!-/:-@\\[-`{-~]",
            GPT2,
        ],
        false,
    ),
    bpe("MINERVA", &["minerva-7b"], STARCODER, false),
    bpe(
        "GPT4O",
        &["gpt-4o", "llama4", "kanana2", "talkie"],
        &[GPT4O],
        false,
    ),
    bpe("MINIMAX_M2", &["minimax-m2"], &[GPT4O], false),
    bpe(
        "GRANITE_EMB_MULTI",
        &["granite-embed-multi-97m"],
        &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        true,
    ),
    bpe(
        "TINY_AYA",
        &["tiny_aya", "cohere2moe"],
        &[
            TINY_AYA_DIGITS,
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        false,
    ),
    bpe(
        "SUPERBPE",
        &["superbpe"],
        &["\\p{N}+", "(?=(\\d{3})+(?!\\d))"],
        false,
    ),
    bpe("TRILLION", &["trillion"], &[GPT2], false),
    bpe("GRANITE_DOCLING", &["granite-docling"], &[GPT2], false),
    bpe(
        "BAILINGMOE",
        &["bailingmoe", "bailingmoe2", "llada-moe"],
        &[
            "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        ],
        false,
    ),
    bpe(
        "SEED_CODER",
        &["seed-coder"],
        &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        false,
    ),
    bpe("HUNYUAN", &["hunyuan"], &[QWEN2], false),
    bpe("KIMI_K2", &["kimi-k2"], &[KIMI_K2], false),
    bpe(
        "UFAKZEKA",
        &["ufakzeka"],
        &[
            "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        false,
    ),
    bpe("GROK_2", &["grok-2"], &[QWEN2], false),
    bpe(
        "AFMOE",
        &["afmoe"],
        &[
            AFMOE_DIGITS,
            "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        false,
    ),
    bpe("LAGUNA", &["laguna"], &[NEWLINES, QWEN2], false),
    bpe("SOLAR_OPEN", &["solar-open"], &[QWEN2], false),
    bpe("MELLUM2", &["mellum2"], STARCODER, false),
    bpe(
        "MINICPM5",
        &["minicpm5"],
        &[
            "\\p{N}{1,3}",
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        true,
    ),
];

/// The entry for a `tokenizer.ggml.pre` name.
pub fn find(pre: &str) -> Option<&'static PreSpec> {
    PRE_TOKENIZERS.iter().find(|p| p.names.contains(&pre))
}
