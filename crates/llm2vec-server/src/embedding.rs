//! What both embedding endpoints share: reading and parsing the JSON body, checking the number of inputs,
//! tokenizing on arrival (off the async workers; over-length inputs refused unless truncation is asked for),
//! waiting for the rows from the inference queue, and cutting dimensions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use http_body_util::LengthLimitError;
use llm2vec::tokenize::{TokenizeOptions, Tokenized};
use llm2vec::{Embeddings, Encoder, Input};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::batcher::Batcher;
use crate::error::ApiError;

/// Reads the whole body of `request`: 413 over `limit` bytes (before reading any of it when Content-Length
/// says so, so that an `Expect: 100-continue` client is not asked to send it), 408 when it takes longer than
/// `timeout`, 400 when the client breaks it off. The request comes back with the body in memory.
pub async fn read_body(request: Request, limit: usize, timeout: Duration) -> Result<Request, ApiError> {
    let too_large = || ApiError::too_large(format!("request body is larger than the limit of {limit} bytes"));
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if std::error::Error::source(&e).is_some_and(<dyn std::error::Error>::is::<LengthLimitError>) => {
            return Err(too_large())
        }
        Ok(Err(e)) => return Err(ApiError::bad_request(format!("cannot read the request body: {e}"))),
        Err(_) => {
            let message = format!("the request body took more than {} s to arrive", timeout.as_secs_f64());
            return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, message));
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Parses a request body: 400 when it is not UTF-8 or not JSON, 422 when the JSON does not fit the schema.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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

/// The longest text, in bytes, that can have no more tokens than the limit for a text's own tokens
/// (doc_max_length, or max_length if lower): that many of the vocabulary's longest token, twice over for
/// normalisation. A longer text is over the limit for certain, and is refused without tokenizing it.
pub fn max_text_bytes(encoder: &Encoder) -> usize {
    let settings = encoder.settings();
    let longest = encoder.tokenizer().inner().get_vocab(true).keys().map(String::len).max().unwrap_or(1);
    settings.doc_max_length.min(settings.max_length).saturating_mul(longest).saturating_mul(2)
}

/// Tokenizes every input on the blocking pool. With `truncate` false, an input that `llm2vec encode` would cut
/// is refused (413, naming the input and its length): one over `max_text_bytes`, one whose text has more than
/// doc_max_length tokens, or one over max_length in all. With `truncate` true it is cut as `encode` cuts it,
/// and marked truncated.
pub async fn tokenize(
    encoder: Arc<Encoder>,
    inputs: Vec<Input>,
    truncate: bool,
    max_text_bytes: usize,
) -> Result<Vec<Tokenized>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let one = |(i, input)| tokenize_one(&encoder, i, input, truncate, max_text_bytes);
        inputs.iter().enumerate().map(one).collect()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenization failed: {e}")))?
}

fn tokenize_one(
    encoder: &Encoder,
    i: usize,
    input: &Input,
    truncate: bool,
    max_text_bytes: usize,
) -> Result<Tokenized, ApiError> {
    let settings = encoder.settings();
    let n = i + 1;
    if !truncate && input.text.len() > max_text_bytes {
        let limit = settings.doc_max_length.min(settings.max_length);
        let bytes = input.text.len();
        return Err(ApiError::too_large(format!("input {n} is {bytes} bytes, too long to fit in {limit} tokens")));
    }
    // The word cut to doc_max_length that `encode` makes first (see `TextTokenizer::shorten_document`).
    let count = encoder.tokenizer().count(&input.text).map_err(|e| input_error(i, e))?;
    let shortened = count.min(settings.max_length) > settings.doc_max_length;
    if shortened && !truncate {
        let doc_max_length = settings.doc_max_length;
        return Err(ApiError::too_large(format!(
            "input {n} has {count} tokens of text, more than doc_max_length {doc_max_length}"
        )));
    }
    let mut tokens = encoder.tokenize(input).map_err(|e| input_error(i, e))?;
    if tokens.truncated && !truncate {
        let count = full_length(encoder, input).map_err(|e| input_error(i, e))?;
        let max_length = settings.max_length;
        return Err(ApiError::too_large(format!("input {n} has {count} tokens, more than max_length {max_length}")));
    }
    tokens.truncated |= shortened;
    Ok(tokens)
}

/// The token count of `input` (not shortened to doc_max_length) without the max_length cut.
fn full_length(encoder: &Encoder, input: &Input) -> llm2vec::Result<usize> {
    let uncut = TokenizeOptions { max_length: usize::MAX, ..encoder.settings().tokenize_options() };
    Ok(encoder.tokenizer().tokenize(&input.instruction, &input.text, &uncut)?.ids.len())
}

/// 422 for what is wrong with the input itself (empty text, untokenizable), 500 for anything else.
fn input_error(i: usize, e: llm2vec::Error) -> ApiError {
    match e.at_input(i) {
        llm2vec::Error::Input(msg) => ApiError::invalid(msg),
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
