//! Rebuilds a Hugging Face `tokenizers` tokenizer from a GGUF's own vocabulary (`tokenizer.ggml.*`).
//!
//! `gpt2` vocabularies become byte-level BPE with the GGUF's merges and the pre-tokenizer llama.cpp picks by
//! `tokenizer.ggml.pre`; `llama` (SentencePiece) vocabularies become BPE with merges derived from the token
//! scores, byte fallback and `▁` for spaces, as Hugging Face converts SentencePiece BPE models.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use super::reader::{Array, GgufFile};
use crate::error::{Error, Result};

/// Llama 3's split regex (`tokenizer.ggml.pre` = `llama-bpe`): letters, digits in runs of up to three, ...
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex: as Llama 3's but with single digits.
const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SUPPORTED_PRE: &str = "default, gpt2, gpt-2, smollm, llama-bpe, llama3, qwen2";

// GGUF token types (llama.cpp's llama_token_type).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// The special token ids a GGUF declares.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
}

/// The GGUF vocabulary, borrowed from the file's metadata.
struct GgufVocab<'a> {
    file: &'a GgufFile,
    tokens: &'a [String],
    types: Vec<i32>,
    ids: SpecialIds,
    add_bos: bool,
    add_eos: bool,
}

/// Builds the tokenizer of `file` and returns it with the special ids it declares.
pub fn build(file: &GgufFile) -> Result<(Tokenizer, SpecialIds)> {
    let model = str_key(file, "tokenizer.ggml.model")?
        .ok_or_else(|| err(file, "no `tokenizer.ggml.model` in the file".into()))?;
    let tokens = match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
        Some(Array::String(tokens)) if !tokens.is_empty() => tokens.as_slice(),
        _ => return Err(err(file, "`tokenizer.ggml.tokens` is missing or not a non-empty string array".into())),
    };
    let is_spm = model == "llama";
    let vocab = GgufVocab {
        file,
        tokens,
        types: token_types(file, tokens.len())?,
        ids: special_ids(file, tokens.len())?,
        add_bos: bool_key(file, "tokenizer.ggml.add_bos_token")?.unwrap_or(is_spm),
        add_eos: bool_key(file, "tokenizer.ggml.add_eos_token")?.unwrap_or(false),
    };
    let mut tokenizer = match model {
        "gpt2" => byte_level_bpe(&vocab)?,
        "llama" => sentencepiece_bpe(&vocab)?,
        other => return Err(err(file, format!("tokenizer model `{other}` is not supported (supported: gpt2, llama)"))),
    };
    add_special_tokens(&mut tokenizer, &vocab)?;
    Ok((tokenizer, vocab.ids))
}

fn err(file: &GgufFile, msg: String) -> Error {
    Error::Tokenizer(format!("{}: {msg}", file.path().display()))
}

fn tk_err(file: &GgufFile, what: &str, e: impl std::fmt::Display) -> Error {
    err(file, format!("{what}: {e}"))
}

fn str_key<'a>(file: &'a GgufFile, key: &str) -> Result<Option<&'a str>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => {
            v.as_str().map(Some).ok_or_else(|| err(file, format!("`{key}` is a {}, not a string", v.type_name())))
        }
    }
}

fn bool_key(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => {
            v.as_bool().map(Some).ok_or_else(|| err(file, format!("`{key}` is a {}, not a bool", v.type_name())))
        }
    }
}

fn id_key(file: &GgufFile, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(v) = file.get(key) else { return Ok(None) };
    match v.as_u64() {
        Some(id) if (id as usize) < n_tokens => Ok(Some(id as u32)),
        _ => Err(err(file, format!("`{key}` = {v:?} is not a token id below {n_tokens}"))),
    }
}

fn special_ids(file: &GgufFile, n: usize) -> Result<SpecialIds> {
    Ok(SpecialIds {
        bos: id_key(file, "tokenizer.ggml.bos_token_id", n)?,
        eos: id_key(file, "tokenizer.ggml.eos_token_id", n)?,
        pad: id_key(file, "tokenizer.ggml.padding_token_id", n)?,
        unk: id_key(file, "tokenizer.ggml.unknown_token_id", n)?,
    })
}

fn token_types(file: &GgufFile, n: usize) -> Result<Vec<i32>> {
    let types = match file.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
        None => return Ok(vec![TYPE_NORMAL; n]),
        Some(Array::I32(t)) => t.clone(),
        Some(Array::U32(t)) => t.iter().map(|&t| t as i32).collect(),
        Some(_) => return Err(err(file, "`tokenizer.ggml.token_type` is not an int32 array".into())),
    };
    if types.len() != n {
        return Err(err(file, format!("{} token types for {n} tokens", types.len())));
    }
    Ok(types)
}

/// token -> id; for a repeated token the last id wins, as in llama.cpp.
fn vocab_map(tokens: &[String]) -> Vocab {
    tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect()
}

fn byte_level_bpe(v: &GgufVocab) -> Result<Tokenizer> {
    let vocab = vocab_map(v.tokens);
    let merges = gpt2_merges(v.file, &vocab)?;
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges);
    if let Some(unk) = v.ids.unk {
        builder = builder.unk_token(v.tokens[unk as usize].clone());
    }
    let bpe = builder.build().map_err(|e| tk_err(v.file, "BPE", e))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = str_key(v.file, "tokenizer.ggml.pre")?.unwrap_or("default");
    tokenizer.with_pre_tokenizer(Some(byte_level_pre_tokenizer(v.file, pre)?));
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    let post = template(v)?.unwrap_or_else(|| ByteLevel::new(true, false, true).into());
    tokenizer.with_post_processor(Some(post));
    Ok(tokenizer)
}

/// The `tokenizer.ggml.merges` strings ("a b") as pairs, each checked against the vocabulary.
fn gpt2_merges(file: &GgufFile, vocab: &Vocab) -> Result<Merges> {
    let Some(Array::String(merges)) = file.get("tokenizer.ggml.merges").and_then(|v| v.as_array()) else {
        return Err(err(file, "`tokenizer.ggml.merges` is missing or not a string array".into()));
    };
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // As llama.cpp: split at the first space after the first character.
            let first_len = m.chars().next().map_or(0, char::len_utf8);
            let split = m[first_len..].find(' ').map(|p| p + first_len);
            let pair = split.map(|p| (&m[..p], &m[p + 1..]));
            match pair {
                Some((a, b))
                    if vocab.contains_key(a) && vocab.contains_key(b) && vocab.contains_key(&format!("{a}{b}")) =>
                {
                    Ok((a.to_string(), b.to_string()))
                }
                _ => Err(err(file, format!("merge #{i} `{m}` is not two tokens whose concatenation is a token"))),
            }
        })
        .collect()
}

fn byte_level_pre_tokenizer(file: &GgufFile, pre: &str) -> Result<PreTokenizerWrapper> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(pattern.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| tk_err(file, "split regex", e))?;
        Ok(PreSequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into())
    };
    match pre {
        "default" | "gpt2" | "gpt-2" => Ok(ByteLevel::new(false, true, true).into()),
        "smollm" => {
            Ok(PreSequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into())
        }
        "llama-bpe" | "llama3" | "llama-v3" => split(LLAMA3_PATTERN),
        "qwen2" => split(QWEN2_PATTERN),
        other => Err(err(file, format!("pre-tokenizer `{other}` is not supported (supported: {SUPPORTED_PRE})"))),
    }
}

fn sentencepiece_bpe(v: &GgufVocab) -> Result<Tokenizer> {
    let scores = match v.file.get("tokenizer.ggml.scores").and_then(|s| s.as_array()) {
        Some(Array::F32(s)) if s.len() == v.tokens.len() => s.as_slice(),
        _ => return Err(err(v.file, "`tokenizer.ggml.scores` is missing or not one float32 per token".into())),
    };
    let merges = sentencepiece_merges(v.tokens, &v.types, scores);
    let mut builder = BPE::builder().vocab_and_merges(vocab_map(v.tokens), merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = v.ids.unk {
        builder = builder.unk_token(v.tokens[unk as usize].clone());
    }
    let bpe = builder.build().map_err(|e| tk_err(v.file, "BPE", e))?;
    let add_prefix = bool_key(v.file, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(spm_normalizer(v.file, add_prefix)?))
        .map_err(|e| tk_err(v.file, "normalizer", e))?;
    tokenizer.with_decoder(Some(spm_decoder(v.file, add_prefix)?));
    if let Some(post) = template(v)? {
        tokenizer.with_post_processor(Some(post));
    }
    Ok(tokenizer)
}

/// Pieces longer than this (in bytes) are not split into merges: real vocabularies stay far below it (Gemma 3's
/// longest normal piece has 48 bytes), and it bounds the work, quadratic in a piece's length, on hostile files.
const MAX_MERGED_PIECE_BYTES: usize = 256;

/// SentencePiece BPE as merges: pieces `a`, `b` merge when `a + b` is a piece, ranked by the merged piece's
/// score (highest first), then by the ids of the merged piece, `a` and `b`. Only normal pieces take part:
/// control, user-defined and byte pieces never come out of merging.
fn sentencepiece_merges(tokens: &[String], types: &[i32], scores: &[f32]) -> Merges {
    let normal: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| types[i] == TYPE_NORMAL)
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let mut ranked: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (piece, &id) in normal.iter().filter(|(p, _)| p.len() <= MAX_MERGED_PIECE_BYTES) {
        for (split, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(split);
            if let (Some(&ia), Some(&ib)) = (normal.get(a), normal.get(b)) {
                ranked.push((scores[id as usize], id, ia, ib));
            }
        }
    }
    ranked.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2, x.3).cmp(&(y.1, y.2, y.3))));
    ranked.into_iter().map(|(_, _, a, b)| (tokens[a as usize].clone(), tokens[b as usize].clone())).collect()
}

fn spm_normalizer(file: &GgufFile, add_prefix: bool) -> Result<NormalizerWrapper> {
    let replace = Replace::new(" ", "▁").map_err(|e| tk_err(file, "normalizer", e))?;
    if !add_prefix {
        return Ok(replace.into());
    }
    Ok(NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace.into()]).into())
}

fn spm_decoder(file: &GgufFile, add_prefix: bool) -> Result<DecoderWrapper> {
    let replace = Replace::new("▁", " ").map_err(|e| tk_err(file, "decoder", e))?;
    let mut steps: Vec<DecoderWrapper> = vec![replace.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_prefix {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    Ok(DecoderSequence::new(steps).into())
}

/// BOS/EOS insertion as `tokenizer.ggml.add_bos_token` / `add_eos_token` ask, or `None` when neither is set.
fn template(v: &GgufVocab) -> Result<Option<PostProcessorWrapper>> {
    let bos = v.ids.bos.filter(|_| v.add_bos);
    let eos = v.ids.eos.filter(|_| v.add_eos);
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let sequence = |seq: &str, type_id: u32| {
        let bos = bos.map(|_| format!("BOS:{type_id}"));
        let eos = eos.map(|_| format!("EOS:{type_id}"));
        [bos, Some(format!("{seq}:{type_id}")), eos].into_iter().flatten().collect::<Vec<_>>()
    };
    let single = sequence("$A", 0).join(" ");
    let pair = [sequence("$A", 0), sequence("$B", 1)].concat().join(" ");
    let mut specials = Vec::new();
    for (label, id) in [("BOS", bos), ("EOS", eos)] {
        if let Some(id) = id {
            let token = SpecialToken::new(label.into(), vec![id], vec![v.tokens[id as usize].clone()]);
            specials.push(token.map_err(|e| tk_err(v.file, "template", e))?);
        }
    }
    let processor = TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| tk_err(v.file, "template", e))?
        .special_tokens(specials)
        .build()
        .map_err(|e| tk_err(v.file, "template", e))?;
    Ok(Some(processor.into()))
}

/// Unknown and control tokens become special added tokens; user-defined tokens become (non-special) added
/// tokens, matched in the raw text before the model as llama.cpp does.
fn add_special_tokens(tokenizer: &mut Tokenizer, v: &GgufVocab) -> Result<()> {
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (token, &ty) in v.tokens.iter().zip(&v.types) {
        match ty {
            TYPE_UNKNOWN | TYPE_CONTROL => special.push(AddedToken::from(token.clone(), true)),
            TYPE_USER_DEFINED => user.push(AddedToken::from(token.clone(), false).normalized(false)),
            _ => {}
        }
    }
    tokenizer.add_special_tokens(special).map_err(|e| tk_err(v.file, "special tokens", e))?;
    tokenizer.add_tokens(user).map_err(|e| tk_err(v.file, "user-defined tokens", e))?;
    Ok(())
}
