//! Tokenization the LLM2Vec way: `instruction + " " + text` tokenized jointly, with the tokens that
//! overlap the text part marked for pooling (found from character offsets, not by re-tokenizing the text).

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// One tokenized input: ids and the half-open range of positions to pool when the instruction is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    pub text_range: std::ops::Range<usize>,
    /// True when the input was cut to `max_length` tokens.
    pub truncated: bool,
}

/// A chat template the reference applies to the instruct models it knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChatWrapper {
    prefix: &'static str,
    suffix: &'static str,
    /// Llama-3-Instruct's wrapper returns before the end-of-sequence token would be added.
    skips_eos: bool,
}

fn chat_wrapper(name_or_path: &str) -> Option<ChatWrapper> {
    let w = |prefix, suffix, skips_eos| Some(ChatWrapper { prefix, suffix, skips_eos });
    match name_or_path {
        "meta-llama/Meta-Llama-3-8B-Instruct" => w("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>", true),
        "mistralai/Mistral-7B-Instruct-v0.2" | "meta-llama/Llama-2-7b-chat-hf" => w("[INST] ", " [/INST]", false),
        "google/gemma-2-9b-it" => w("<bos><start_of_turn>user\n", "<end_of_turn>", false),
        "Qwen/Qwen2-1.5B-Instruct" | "Qwen/Qwen2-7B-Instruct" => w("<|im_start|>user\n", "<|im_end|>", false),
        _ => None,
    }
}

/// Settings that shape how an input becomes tokens.
#[derive(Debug, Clone)]
pub struct TokenizeOptions {
    pub max_length: usize,
    pub doc_max_length: usize,
    /// Append the model's end-of-sequence token (for `eos_token` pooling).
    pub append_eos: bool,
}

/// The model's tokenizer plus the special tokens LLM2Vec needs.
pub struct TextTokenizer {
    inner: Tokenizer,
    eos_id: Option<u32>,
    bos_id: Option<u32>,
    chat: Option<ChatWrapper>,
}

impl TextTokenizer {
    /// Wraps a tokenizer; its own padding and truncation settings are removed (we pad and truncate ourselves).
    pub fn new(mut inner: Tokenizer, bos_id: Option<u32>, eos_id: Option<u32>, name_or_path: &str) -> Result<Self> {
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| Error::Tokenizer(format!("cannot disable truncation: {e}")))?;
        Ok(Self { inner, eos_id, bos_id, chat: chat_wrapper(name_or_path) })
    }

    /// Reads `tokenizer.json` from a model directory.
    pub fn load_json(path: &Path) -> Result<Tokenizer> {
        Tokenizer::from_file(path).map_err(|e| Error::format(path, format!("cannot read tokenizer: {e}")))
    }

    /// Adds `token` as a special token (never split, never masked) and returns its id.
    pub fn add_special_token(&mut self, token: &str) -> Result<u32> {
        self.inner
            .add_special_tokens([tokenizers::AddedToken::from(token.to_string(), true)])
            .map_err(|e| Error::Tokenizer(format!("cannot add `{token}`: {e}")))?;
        self.inner.token_to_id(token).ok_or_else(|| Error::Tokenizer(format!("`{token}` was not added")))
    }

    /// The underlying tokenizer (plain encoding, no instruction or chat handling).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Number of tokens of `text` alone, without special tokens.
    pub fn count(&self, text: &str) -> Result<usize> {
        Ok(self.encode_raw(text, false)?.get_ids().len())
    }

    fn encode_raw(&self, text: &str, special: bool) -> Result<tokenizers::Encoding> {
        self.inner.encode(text, special).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Cuts `text` word by word until it has at most `doc_max_length` tokens, as the reference does.
    pub fn shorten_document(&self, text: &str, opts: &TokenizeOptions) -> Result<String> {
        let mut text = text.to_string();
        let mut count = self.count(&text)?.min(opts.max_length);
        while count > opts.doc_max_length {
            let words: Vec<&str> = text.split_whitespace().collect();
            let keep = (words.len() as f64 * (opts.doc_max_length as f64 / count as f64)) as usize;
            if keep == 0 {
                // One huge word: the reference's word cut would leave nothing; cut at a token boundary instead.
                return self.cut_at_token(&text, opts.doc_max_length);
            }
            let shorter = words[..keep.min(words.len())].join(" ");
            if shorter == text {
                break;
            }
            text = shorter;
            count = self.count(&text)?.min(opts.max_length);
        }
        Ok(text)
    }

    /// The prefix of `text` covered by its first `n` tokens.
    fn cut_at_token(&self, text: &str, n: usize) -> Result<String> {
        let enc = self.encode_raw(text, false)?;
        let end = enc.get_offsets().get(n.saturating_sub(1)).map_or(text.len(), |&(_, end)| end);
        Ok(text.get(..end).unwrap_or(text).to_string())
    }

    /// The string the model sees and the byte offset where the text part starts in it.
    fn prompt(&self, instruction: &str, text: &str, opts: &TokenizeOptions) -> (String, usize, bool) {
        let (mut joint, mut start) = if instruction.is_empty() {
            (text.to_string(), 0)
        } else {
            let head = instruction.trim();
            (format!("{head} {text}"), head.len() + 1)
        };
        let mut append_eos = opts.append_eos;
        if let Some(chat) = self.chat {
            let (stripped, cut) = strip(&joint);
            start = chat.prefix.len() + start.saturating_sub(cut);
            joint = format!("{}{}{}", chat.prefix, stripped, chat.suffix);
            append_eos &= !chat.skips_eos;
        }
        if append_eos {
            let (stripped, cut) = strip(&joint);
            start = start.saturating_sub(cut);
            joint = stripped.to_string();
        }
        let start = start.min(joint.len());
        (joint, start, append_eos)
    }

    /// Tokenizes one `[instruction, text]` input (the text already shortened to doc_max_length).
    pub fn tokenize(&self, instruction: &str, text: &str, opts: &TokenizeOptions) -> Result<Tokenized> {
        let (joint, text_start, append_eos) = self.prompt(instruction, text, opts);
        let enc = self.encode_raw(&joint, true)?;
        let mut ids = enc.get_ids().to_vec();
        // A token belongs to the text if its span reaches it; the separator space counts as text (SentencePiece
        // tokenizers turn it into the text's word-start marker). Zero-width tokens were added by the post-processor.
        let in_text = |&(start, end): &(usize, usize)| end > start && end >= text_start;
        let first_pooled = enc.get_offsets().iter().position(in_text).unwrap_or(ids.len());
        let last_pooled = enc.get_offsets().iter().rposition(in_text).map_or(first_pooled, |i| i + 1);
        let budget = opts.max_length.saturating_sub(usize::from(append_eos)).max(1);
        let truncated = ids.len() > budget;
        let mut end = last_pooled;
        if truncated {
            let trailing: Vec<u32> = ids[last_pooled..].to_vec();
            let keep = budget.saturating_sub(trailing.len()).max(1);
            ids.truncate(keep);
            ids.extend(trailing);
            end = keep.min(last_pooled);
        }
        let start = first_pooled.min(end);
        if append_eos {
            let eos = self.eos_id.ok_or_else(|| {
                Error::Tokenizer("eos_token pooling needs an end-of-sequence token, and the tokenizer has none".into())
            })?;
            ids.push(eos);
            end = ids.len();
        }
        Ok(Tokenized { ids, text_range: start..end, truncated })
    }
}

/// Python's `str.strip()`: the stripped slice and how many bytes were cut from the front.
fn strip(s: &str) -> (&str, usize) {
    let front = s.trim_start();
    (front.trim_end(), s.len() - front.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(name: &str) -> TextTokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama/model/tokenizer.json");
        TextTokenizer::new(TextTokenizer::load_json(&path).unwrap(), Some(1), Some(2), name).unwrap()
    }

    fn opts(append_eos: bool) -> TokenizeOptions {
        TokenizeOptions { max_length: 512, doc_max_length: 400, append_eos }
    }

    #[test]
    fn instruction_and_text_are_joined_with_one_space() {
        let t = tokenizer("tiny");
        assert_eq!(t.prompt("  Find it:  ", "the text", &opts(false)), ("Find it: the text".into(), 9, false));
        assert_eq!(t.prompt("", " the text", &opts(false)), (" the text".into(), 0, false));
        assert_eq!(t.prompt("", " the text ", &opts(true)), ("the text".into(), 0, true));
    }

    #[test]
    fn one_huge_word_is_cut_at_a_token_boundary() {
        let t = tokenizer("tiny");
        let opts = TokenizeOptions { max_length: 512, doc_max_length: 10, append_eos: false };
        let short = t.shorten_document(&"y".repeat(3000), &opts).unwrap();
        assert!(!short.is_empty() && short.chars().all(|c| c == 'y'));
        assert_eq!(t.count(&short).unwrap(), 10);
    }

    #[test]
    fn known_instruct_models_get_the_reference_chat_wrappers() {
        let mistral = tokenizer("mistralai/Mistral-7B-Instruct-v0.2");
        assert_eq!(mistral.prompt("Q:", "text ", &opts(false)), ("[INST] Q: text [/INST]".into(), 10, false));
        let llama3 = tokenizer("meta-llama/Meta-Llama-3-8B-Instruct");
        let (joint, start, eos) = llama3.prompt("", "text", &opts(true));
        assert_eq!(joint, "<|start_header_id|>user<|end_header_id|>\n\ntext<|eot_id|>");
        assert_eq!((start, eos), (joint.find("text").unwrap(), false));
        let qwen = tokenizer("Qwen/Qwen2-7B-Instruct");
        assert_eq!(qwen.prompt("Q:", "t", &opts(true)), ("<|im_start|>user\nQ: t<|im_end|>".into(), 20, true));
    }
}
