//! `encode_with_progress` reports inputs and tokens done after tokenizing and after every batch.

use std::path::Path;

use llm2vec::{Encoder, Input, Options, Progress};

#[test]
fn progress_counts_inputs_and_tokens_up_to_the_totals() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama/model");
    let encoder = Encoder::from_pretrained(model.to_str().unwrap(), Options::default()).unwrap();
    let inputs: Vec<Input> =
        ["a flute .", "a man is playing a large flute .", "a man .", "the man sings ."].map(Input::text).into();
    let mut seen: Vec<Progress> = Vec::new();
    let embeddings = encoder
        .encode_with_progress(&inputs, 3, |p| {
            seen.push(p);
            Ok(())
        })
        .unwrap();
    let tokens = embeddings.tokens;
    let first = Progress { done: 0, total: 4, tokens_done: 0, tokens_total: tokens };
    assert_eq!(seen.first(), Some(&first));
    assert_eq!(seen.last(), Some(&Progress { done: 4, tokens_done: tokens, ..first }));
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1].done == 3 && seen[1].tokens_done > 3 * tokens / 4, "the longest inputs run first: {seen:?}");
}
