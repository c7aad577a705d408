//! The server's request bodies: `openai::parse_request` (`POST /v1/embeddings`) and `embed::parse_request`
//! (`POST /embed`) on the same bytes, with a limit of 16 inputs and a 64-dimension encoder. Errors must be
//! client errors (400, 413 or 422); an accepted request holds 1..=16 inputs and 1..=64 dimensions.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use llm2vec_server::error::ApiError;
use llm2vec_server::{embed, openai};

const MAX_INPUTS: usize = 16;
const DIM: usize = 64;

fn check_error(route: &str, e: &ApiError) {
    debug!("{route}: {} {}", e.status.as_u16(), e.message);
    assert!([400, 413, 422].contains(&e.status.as_u16()), "{route}: status {} for {}", e.status, e.message);
    assert!(!e.message.is_empty());
}

fuzz_target!(|data: &[u8]| {
    match openai::parse_request(data, MAX_INPUTS, DIM) {
        Ok(request) => {
            debug!("/v1/embeddings: {} inputs, {} dimensions", request.inputs.len(), request.dimensions);
            assert!((1..=MAX_INPUTS).contains(&request.inputs.len()));
            assert!((1..=DIM).contains(&request.dimensions));
            assert!(request.inputs.iter().all(|i| i.instruction.is_empty()));
        }
        Err(e) => check_error("/v1/embeddings", &e),
    }
    match embed::parse_request(data, MAX_INPUTS) {
        Ok(request) => {
            debug!(
                "/embed: {} inputs, normalize {}, truncate {}",
                request.inputs.len(),
                request.normalize,
                request.truncate
            );
            assert!((1..=MAX_INPUTS).contains(&request.inputs.len()));
        }
        Err(e) => check_error("/embed", &e),
    }
    if std::str::from_utf8(data).is_err() {
        let e = openai::parse_request(data, MAX_INPUTS, DIM).err().expect("a body that is not UTF-8 is refused");
        assert_eq!(e.status.as_u16(), 400);
    }
});
