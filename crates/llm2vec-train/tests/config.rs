//! The config parser on the reference's field sets (values written here, fields as in
//! train_configs/{mntp,simcse,supervised}/*.json), ignored-field notes and field errors.

use llm2vec_train::config::{closest_field, edit_distance, parse, CollatorType, MaskTokenType, Stage};
use llm2vec_train::TrainError;
use std::path::Path;

const MNTP: &str = r#"{
    "model_name_or_path": "tiny/model", "dataset_name": "wikitext", "dataset_config_name": "wikitext-103-raw-v1",
    "train_file": "data/wiki.txt",
    "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "gradient_accumulation_steps": 2,
    "do_train": true, "do_eval": true, "max_seq_length": 64, "mask_token_type": "blank",
    "data_collator_type": "all_mask", "mlm_probability": 0.8, "overwrite_output_dir": true,
    "output_dir": "out/mntp", "evaluation_strategy": "steps", "eval_steps": 10, "save_steps": 20,
    "stop_after_n_steps": 100, "lora_r": 4, "gradient_checkpointing": true, "torch_dtype": "bfloat16",
    "attn_implementation": "flash_attention_2"
}"#;

const SIMCSE: &str = r#"{
    "model_name_or_path": "tiny/model", "peft_model_name_or_path": "out/mntp", "simcse_dropout": 0.3,
    "bidirectional": true, "pooling_mode": "mean", "dataset_name": "Wiki1M",
    "dataset_file_path": "data/wiki1m.txt", "remove_unused_columns": false, "learning_rate": 3e-5,
    "loss_scale": 20, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "do_train": true,
    "disable_tqdm": false, "max_seq_length": 32, "overwrite_output_dir": true, "output_dir": "out/simcse",
    "logging_steps": 5, "save_steps": 20, "save_only_model": true, "stop_after_n_steps": 100, "lora_r": 4,
    "gradient_checkpointing": true, "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2",
    "seed": 7
}"#;

const SUPERVISED: &str = r#"{
    "model_name_or_path": "tiny/model", "peft_model_name_or_path": "out/mntp", "bidirectional": true,
    "pooling_mode": "mean", "dataset_name": "E5", "dataset_file_path": "data/echo", "remove_unused_columns": false,
    "learning_rate": 2e-4, "num_train_epochs": 3, "warmup_steps": 30, "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8, "gradient_accumulation_steps": 1, "do_train": true, "disable_tqdm": false,
    "max_seq_length": 64, "overwrite_output_dir": true, "output_dir": "out/sup", "logging_steps": 5,
    "save_steps": 20, "save_only_model": true, "stop_after_n_steps": 100, "lora_r": 4,
    "gradient_checkpointing": true, "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2",
    "seed": 42
}"#;

#[test]
fn mntp_fields() {
    let file = Path::new("mntp.json");
    let loaded = parse(MNTP, file).unwrap();
    let c = &loaded.config;
    assert_eq!(c.data_collator_type, CollatorType::AllMask);
    assert_eq!(c.mask_token_type, MaskTokenType::Blank);
    assert_eq!((c.mlm_probability, c.max_seq_length, c.lora_r), (0.8, Some(64), 4));
    assert_eq!((c.gradient_accumulation_steps, c.eval_steps, c.stop_after_n_steps), (2, Some(10), 100));
    assert_eq!(c.lora_alpha(), 8.0);
    assert_eq!(c.data_file(file).unwrap(), Path::new("data/wiki.txt"));
    c.validate(Stage::Mntp, file).unwrap();
    let ignored: Vec<_> = ["attn_implementation", "dataset_config_name", "evaluation_strategy", "overwrite_output_dir"]
        .into_iter()
        .filter(|f| loaded.notes.iter().any(|n| n.contains(&format!("`{f}`"))))
        .collect();
    assert_eq!(ignored.len(), 4, "{:?}", loaded.notes);
}

#[test]
fn simcse_and_supervised_fields() {
    let file = Path::new("simcse.json");
    let c = parse(SIMCSE, file).unwrap().config;
    assert_eq!((c.simcse_dropout, c.loss_scale, c.seed, c.bidirectional), (0.3, 20.0, 7, true));
    assert_eq!(c.peft_model_name_or_path.as_deref(), Some("out/mntp"));
    assert_eq!(c.data_file(file).unwrap(), Path::new("data/wiki1m.txt"));
    c.validate(Stage::SimCse, file).unwrap();
    let file = Path::new("sup.json");
    let c = parse(SUPERVISED, file).unwrap().config;
    assert_eq!((c.learning_rate, c.warmup_steps, c.num_train_epochs), (2e-4, 30, 3.0));
    assert_eq!(c.loss_scale, 50.0, "the reference's default scale");
    assert_eq!(c.pooling_mode, "mean");
    c.validate(Stage::Supervised, file).unwrap();
}

#[test]
fn unknown_field_names_the_closest() {
    let err = parse(r#"{"model_name_or_path": "m", "lerning_rate": 1e-4}"#, Path::new("c.json")).unwrap_err();
    match &err {
        TrainError::UnknownField { field, closest, .. } => {
            assert_eq!((field.as_str(), closest.as_deref()), ("lerning_rate", Some("learning_rate")));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("c.json") && err.to_string().contains("did you mean `learning_rate`"));
    assert_eq!(closest_field("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"), None);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
}

#[test]
fn missing_and_invalid_fields() {
    let file = Path::new("m.json");
    let c = parse(r#"{"train_file": "t.txt", "output_dir": "o"}"#, file).unwrap().config;
    let err = c.validate(Stage::Mntp, file).unwrap_err().to_string();
    assert!(err.contains("m.json") && err.contains("model_name_or_path"), "{err}");
    let c =
        parse(r#"{"model_name_or_path": "m", "dataset_name": "wikitext", "output_dir": "o"}"#, file).unwrap().config;
    assert!(c.validate(Stage::Mntp, file).unwrap_err().to_string().contains("train_file"));
    let c = parse(r#"{"model_name_or_path": "m", "train_file": "t", "output_dir": "o", "mlm_probability": 1.5}"#, file)
        .unwrap()
        .config;
    assert!(c.validate(Stage::Mntp, file).unwrap_err().to_string().contains("mlm_probability"));
    for rate in ["0", "-1e-4"] {
        let json =
            format!(r#"{{"model_name_or_path": "m", "train_file": "t", "output_dir": "o", "learning_rate": {rate}}}"#);
        let err = parse(&json, file).unwrap().config.validate(Stage::SimCse, file).unwrap_err().to_string();
        assert!(err.contains("m.json") && err.contains("`learning_rate` must be positive"), "{err}");
    }
    assert!(parse(r#"{"mask_token_type": "bogus"}"#, file).is_err());
    assert!(parse(r#"{"lora_r": "sixteen"}"#, file).unwrap_err().to_string().contains("m.json"));
    assert!(parse("[1]", file).is_err());
}
