//! What both embedding endpoints share: reading and parsing the JSON body, checking the number of inputs, tokenizing on
//! arrival (off the async workers; over-length inputs refused unless truncation is asked for), waiting for
//! the rows from the inference queue, and cutting dimensions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use llm2vec::tokenize::{TokenizeOptions, Tokenized};
use llm2vec::{Embeddings, Encoder, Input, Pooling};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::batcher::Batcher;
use crate::error::ApiError;

/// The body of a request: 413 over the size limit (any other rejection keeps its status).
pub fn read_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large(format!("request body is larger than the limit of {limit} bytes"))
        }
        status => ApiError::new(status, rejection.body_text()),
    })
}

/// Parses a JSON body: 400 when it is not UTF-8 or not JSON, 422 when the JSON does not fit the schema.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!("request body is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Data => ApiError::invalid(format!("invalid request: {e}")),
        _ => ApiError::bad_request(format!("malformed JSON: {e}")),
    })
}

/// 422 for no inputs, 413 for more than `max` (the server's --max-client-batch-size).
pub fn check_count(count: usize, field: &str, max: usize) -> Result<(), ApiError> {
    match count {
        0 => Err(ApiError::invalid(format!("`{field}` is empty"))),
        n if n > max => {
            Err(ApiError::too_large(format!("`{field}` has {n} items, more than the limit of {max} per request")))
        }
        _ => Ok(()),
    }
}

/// Tokenizes every input on the blocking pool. With `truncate` false, an input longer than max_length is
/// refused (413, with its token count).
pub async fn tokenize(encoder: Arc<Encoder>, inputs: Vec<Input>, truncate: bool) -> Result<Vec<Tokenized>, ApiError> {
    tokio::task::spawn_blocking(move || {
        inputs.iter().enumerate().map(|(i, input)| tokenize_one(&encoder, i, input, truncate)).collect()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenization failed: {e}")))?
}

fn tokenize_one(encoder: &Encoder, i: usize, input: &Input, truncate: bool) -> Result<Tokenized, ApiError> {
    let tokens = encoder.tokenize(input).map_err(|e| input_error(i, e))?;
    if tokens.truncated && !truncate {
        let count = full_length(encoder, input).map_err(|e| input_error(i, e))?;
        let max_length = encoder.settings().max_length;
        return Err(ApiError::too_large(format!(
            "input {} has {count} tokens, more than max_length {max_length}",
            i + 1
        )));
    }
    Ok(tokens)
}

/// The token count of `input` without the max_length cut (what an over-length error reports).
fn full_length(encoder: &Encoder, input: &Input) -> llm2vec::Result<usize> {
    let settings = encoder.settings();
    let opts = TokenizeOptions {
        max_length: settings.max_length,
        doc_max_length: settings.doc_max_length,
        append_eos: settings.pooling == Pooling::EosToken,
    };
    let text = encoder.tokenizer().shorten_document(&input.text, &opts)?;
    let uncut = TokenizeOptions { max_length: usize::MAX, ..opts };
    Ok(encoder.tokenizer().tokenize(&input.instruction, &text, &uncut)?.ids.len())
}

/// 422 for what is wrong with the input itself (empty text, untokenizable), 500 for anything else.
fn input_error(i: usize, e: llm2vec::Error) -> ApiError {
    match e {
        llm2vec::Error::Input(msg) | llm2vec::Error::Tokenizer(msg) => {
            ApiError::invalid(format!("input {}: {msg}", i + 1))
        }
        other => ApiError::internal(format!("input {}: {other}", i + 1)),
    }
}

/// Queues the inputs and waits for their rows; the result is in input order. Dropping this future (client
/// gone, timeout) drops the inputs still queued.
pub async fn run(batcher: &Batcher, inputs: Vec<Tokenized>, dim: usize) -> Result<Embeddings, ApiError> {
    let tokens = inputs.iter().map(|t| t.ids.len()).sum();
    let truncated = inputs.iter().enumerate().filter(|(_, t)| t.truncated).map(|(i, _)| i).collect();
    let receivers = batcher.submit(inputs).map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    let mut data = Vec::with_capacity(receivers.len() * dim);
    for receiver in receivers {
        let row = receiver.await.map_err(|_| ApiError::internal("the inference thread stopped"))?;
        data.extend(row.map_err(ApiError::internal)?);
    }
    Ok(Embeddings { rows: data.len() / dim.max(1), data, dim, tokens, truncated })
}

/// Keeps the first `dims` values of every row (Matryoshka-style); normalise afterwards.
pub fn cut_dimensions(embeddings: Embeddings, dims: usize) -> Embeddings {
    if dims >= embeddings.dim {
        return embeddings;
    }
    let data = embeddings.data.chunks(embeddings.dim.max(1)).flat_map(|row| &row[..dims]).copied().collect();
    Embeddings { data, dim: dims, ..embeddings }
}
