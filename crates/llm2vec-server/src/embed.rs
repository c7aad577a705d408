//! `POST /embed`, the LLM2Vec-style endpoint: `inputs` is a string or a list whose items are texts or
//! `[instruction, text]` pairs; `instruction` applies to the plain texts (attended to, not pooled);
//! `normalize` (default true) L2-normalises; `truncate` (default false) cuts inputs over the token limits
//! instead of refusing them. The answer is a list of embeddings, one per input, in order; the
//! `x-truncated-inputs` header counts the inputs cut.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderName;
use axum::Json;
use llm2vec::Input;
use serde::Deserialize;

use crate::embedding;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    inputs: Inputs,
    #[serde(default)]
    instruction: String,
    #[serde(default = "yes")]
    normalize: bool,
    #[serde(default)]
    truncate: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "`inputs` must be a string or a list of strings and [instruction, text] pairs")]
enum Inputs {
    One(String),
    Many(Vec<Item>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Item {
    Text(String),
    Pair(String, String),
}

const TRUNCATED_INPUTS: HeaderName = HeaderName::from_static("x-truncated-inputs");

/// A checked request: its inputs (instructions applied) and what to do with them.
pub struct EmbedRequest {
    pub inputs: Vec<Input>,
    pub normalize: bool,
    pub truncate: bool,
}

/// Parses and checks a body: 400 when it is not UTF-8 or JSON, 422 for a schema mismatch or no inputs, 413
/// for more than `max_inputs` inputs.
pub fn parse_request(body: &[u8], max_inputs: usize) -> Result<EmbedRequest, ApiError> {
    let request: Request = embedding::parse_body(body)?;
    let items = match request.inputs {
        Inputs::One(text) => vec![Item::Text(text)],
        Inputs::Many(items) => items,
    };
    embedding::check_count(items.len(), "inputs", max_inputs)?;
    let inputs = items
        .into_iter()
        .map(|item| match item {
            Item::Text(text) => Input::new(request.instruction.as_str(), text),
            Item::Pair(instruction, text) => Input::new(instruction, text),
        })
        .collect();
    Ok(EmbedRequest { inputs, normalize: request.normalize, truncate: request.truncate })
}

/// The handler.
pub async fn embed(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<([(HeaderName, String); 1], Json<Vec<Vec<f32>>>), ApiError> {
    let request = parse_request(&body, state.config.max_client_batch_size)?;
    let tokens =
        embedding::tokenize(state.encoder.clone(), request.inputs, request.truncate, state.max_text_bytes).await?;
    let mut embeddings = embedding::run(&state.batcher, tokens, state.encoder.dim()).await?;
    if request.normalize {
        embeddings.normalize();
    }
    let rows = (0..embeddings.rows).map(|i| embeddings.row(i).to_vec()).collect();
    Ok(([(TRUNCATED_INPUTS, embeddings.truncated.len().to_string())], Json(rows)))
}
