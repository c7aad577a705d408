//! MNTP data end to end with a tiny word-level tokenizer: load, tokenize, group, mask.

use llm2vec_train::config::{CollatorType, MaskTokenType};
use llm2vec_train::data::{group_texts, load_mntp_texts, load_sentences, tokenize_all};
use llm2vec_train::mask::{mask_token_id, Masker, IGNORE_INDEX};
use llm2vec_train::rng::Rng;
use tokenizers::Tokenizer;

fn tokenizer() -> Tokenizer {
    let json = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "[UNK]",
            "vocab": {"[UNK]": 0, "_": 1, "the": 2, "cat": 3, "sat": 4, "on": 5, "mat": 6}}}"#;
    json.parse().unwrap()
}

#[test]
fn load_tokenize_group_and_mask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wiki.jsonl");
    std::fs::write(&path, "{\"text\": \"the cat sat\"}\n{\"text\": \"on the mat\"}\n{\"text\": \"cat\"}\n").unwrap();
    let tok = tokenizer();
    let ids = tokenize_all(&tok, &load_mntp_texts(&path).unwrap()).unwrap();
    assert_eq!(ids, vec![vec![2, 3, 4], vec![5, 2, 6], vec![3]]);
    let blocks = group_texts(&ids, 2).unwrap();
    assert_eq!(blocks, vec![vec![2, 3], vec![4, 5], vec![2, 6]]);

    let mask_id = mask_token_id(MaskTokenType::Blank, &tok, None).unwrap();
    assert_eq!(mask_id, 1);
    assert_eq!(mask_token_id(MaskTokenType::Eos, &tok, Some(6)).unwrap(), 6);
    assert!(mask_token_id(MaskTokenType::Mask, &tok, None).is_err());
    let masker =
        Masker { probability: 0.5, collator: CollatorType::AllMask, mask_id, vocab_size: 7, special_ids: vec![2] };
    let m = masker.mask(&blocks[0], &mut Rng::new(0));
    assert_eq!(m.labels[0], IGNORE_INDEX, "special ids are never masked");
}

#[test]
fn sentences_skip_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wiki1m.txt");
    std::fs::write(&path, "first sentence\n\n  second one  \n").unwrap();
    assert_eq!(load_sentences(&path).unwrap(), ["first sentence", "second one"]);
    assert!(load_sentences(&dir.path().join("none.txt")).unwrap_err().to_string().contains("none.txt"));
}
