//! `POST /v1/embeddings`, the OpenAI embeddings API: `input` (a string or a list of strings), `model`,
//! `encoding_format` (float or base64: little-endian float32), `dimensions` (the first N values, then
//! re-normalised), `truncate` (TEI's field, default false); `user` and other OpenAI fields are ignored.
//! Embeddings are unit length, as OpenAI's are. Inputs over the token limits are refused, as OpenAI refuses
//! them, unless `truncate` is true; `usage.truncated_inputs` counts the inputs cut.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use base64::Engine;
use llm2vec::{Embeddings, Input};
use serde::{Deserialize, Serialize};

use crate::embedding;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
struct Request {
    input: Texts,
    #[serde(default)]
    encoding_format: EncodingFormat,
    dimensions: Option<usize>,
    #[serde(default)]
    truncate: bool,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "`input` must be a string or a list of strings")]
enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize)]
pub struct Response {
    object: &'static str,
    data: Vec<EmbeddingObject>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingObject {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
    /// Inputs cut to the token limits (only with `truncate`).
    truncated_inputs: usize,
}

/// The handler.
pub async fn embeddings(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Json<Response>, ApiError> {
    let request = parse_request(&body, state.config.max_client_batch_size, state.encoder.dim())?;
    let tokens =
        embedding::tokenize(state.encoder.clone(), request.inputs, request.truncate, state.max_text_bytes).await?;
    let mut embeddings = embedding::cut_dimensions(
        embedding::run(&state.batcher, tokens, state.encoder.dim()).await?,
        request.dimensions,
    );
    embeddings.normalize();
    Ok(Json(response(&embeddings, request.encoding_format, &state.model_name)))
}

/// A checked request: its inputs, the dimensions to keep, the encoding of the answer and whether to truncate.
pub struct EmbeddingsRequest {
    pub inputs: Vec<Input>,
    pub dimensions: usize,
    pub truncate: bool,
    encoding_format: EncodingFormat,
}

/// Parses and checks a body for an encoder of `dim` dimensions: 400 when it is not UTF-8 or JSON, 422 for a
/// schema mismatch, no inputs or `dimensions` outside 1..=dim, 413 for more than `max_inputs` inputs.
pub fn parse_request(body: &[u8], max_inputs: usize, dim: usize) -> Result<EmbeddingsRequest, ApiError> {
    let request: Request = embedding::parse_body(body)?;
    let texts = match request.input {
        Texts::One(text) => vec![text],
        Texts::Many(texts) => texts,
    };
    embedding::check_count(texts.len(), "input", max_inputs)?;
    let dimensions = check_dimensions(request.dimensions, dim)?;
    let inputs = texts.into_iter().map(Input::text).collect();
    Ok(EmbeddingsRequest { inputs, dimensions, truncate: request.truncate, encoding_format: request.encoding_format })
}

/// `dimensions` must lie in 1..=dim; absent means all.
fn check_dimensions(dimensions: Option<usize>, dim: usize) -> Result<usize, ApiError> {
    match dimensions {
        None => Ok(dim),
        Some(d) if (1..=dim).contains(&d) => Ok(d),
        Some(d) => Err(ApiError::invalid(format!("`dimensions` must be between 1 and {dim}, got {d}"))),
    }
}

fn response(embeddings: &Embeddings, format: EncodingFormat, model: &str) -> Response {
    let data = (0..embeddings.rows)
        .map(|index| {
            let row = embeddings.row(index);
            let embedding = match format {
                EncodingFormat::Float => Vector::Float(row.to_vec()),
                EncodingFormat::Base64 => Vector::Base64(base64_f32(row)),
            };
            EmbeddingObject { object: "embedding", index, embedding }
        })
        .collect();
    let tokens = embeddings.tokens;
    let usage = Usage { prompt_tokens: tokens, total_tokens: tokens, truncated_inputs: embeddings.truncated.len() };
    Response { object: "list", data, model: model.to_string(), usage }
}

/// Little-endian float32 bytes in standard base64, as OpenAI's `encoding_format: "base64"`.
fn base64_f32(row: &[f32]) -> String {
    let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_checked() {
        assert_eq!(check_dimensions(None, 8).unwrap(), 8);
        assert_eq!(check_dimensions(Some(3), 8).unwrap(), 3);
        assert_eq!(check_dimensions(Some(0), 8).unwrap_err().status, 422);
        assert_eq!(check_dimensions(Some(9), 8).unwrap_err().status, 422);
    }

    #[test]
    fn base64_is_little_endian_float32() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }
}
