//! Options that cannot work are refused when the encoder is built, naming the option.

use std::path::Path;

use llm2vec::{Encoder, Input, Options};

fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/llama/model").to_str().unwrap().to_string()
}

#[test]
fn zero_batch_size_batch_tokens_and_doc_max_length_are_refused() {
    let err = |options: Options| Encoder::from_pretrained(&model(), options).err().expect("built").to_string();
    let msg = err(Options { batch_size: 0, ..Options::default() });
    assert!(msg.contains("batch_size must be at least 1"), "{msg}");
    let msg = err(Options { max_batch_tokens: Some(0), ..Options::default() });
    assert!(msg.contains("max_batch_tokens must be at least 1"), "{msg}");
    let msg = err(Options { doc_max_length: Some(0), ..Options::default() });
    assert!(msg.contains("doc_max_length must be at least 1"), "{msg}");
    let encoder = Encoder::from_pretrained(&model(), Options::default()).unwrap();
    let msg = encoder.encode_with_progress(&[Input::text("a flute .")], 0, |_| Ok(())).unwrap_err().to_string();
    assert!(msg.contains("batch_size must be at least 1"), "{msg}");
}

#[test]
fn the_token_budget_left_to_us_is_the_devices() {
    let budget = |max_batch_tokens| {
        let options = Options { max_batch_tokens, ..Options::default() };
        Encoder::from_pretrained(&model(), options).unwrap().settings().max_batch_tokens
    };
    assert_eq!(budget(None), llm2vec::CPU_MAX_BATCH_TOKENS);
    assert_eq!(budget(Some(300)), 300);
    assert_eq!(llm2vec::default_max_batch_tokens(&llm2vec::Device::Cpu), llm2vec::CPU_MAX_BATCH_TOKENS);
}
