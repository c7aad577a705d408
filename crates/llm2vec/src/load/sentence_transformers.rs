//! Sentence-transformers model folders (`modules.json`, `sentence_bert_config.json`, the pooling
//! module's `config.json`): their encoding settings, in the keys of `llm2vec_config.json`.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::fs::read_json;

/// The settings a sentence-transformers folder asks for (pooling mode, max_length, whether the prompt is
/// pooled, normalisation), or `None` when `dir` has no `modules.json`.
pub fn settings(dir: &Path) -> Result<Option<Value>> {
    let modules_path = dir.join("modules.json");
    if !modules_path.exists() {
        return Ok(None);
    }
    let modules = read_json(&modules_path)?;
    let list = modules.as_array().ok_or_else(|| Error::format(&modules_path, "expected a list of modules"))?;
    let mut out = Map::new();
    for module in list {
        let kind = module.get("type").and_then(Value::as_str).unwrap_or("");
        let sub = dir.join(module.get("path").and_then(Value::as_str).unwrap_or(""));
        match kind.rsplit('.').next().unwrap_or("") {
            "Transformer" => {
                let path = sub.join("sentence_bert_config.json");
                if let Some(n) =
                    path.exists().then(|| read_json(&path)).transpose()?.and_then(|c| c.get("max_seq_length").cloned())
                {
                    out.insert("max_length".into(), n);
                }
            }
            "Pooling" => pooling(&sub.join("config.json"), &mut out)?,
            "Normalize" => {
                out.insert("normalize".into(), json!(true));
            }
            _ => {
                return Err(Error::format(
                    &modules_path,
                    format!("module type `{kind}` is not supported (Transformer, Pooling, Normalize)"),
                ))
            }
        }
    }
    Ok(Some(Value::Object(out)))
}

/// Reads the pooling module's mode and whether it pools the prompt.
fn pooling(path: &Path, out: &mut Map<String, Value>) -> Result<()> {
    let config = read_json(path)?;
    let on = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_cls_token", "bos_token"),
        ("pooling_mode_weightedmean_tokens", "weighted_mean"),
        ("pooling_mode_lasttoken", "last_token"),
    ];
    let chosen: Vec<&str> = modes.iter().filter(|(key, _)| on(key)).map(|(_, mode)| *mode).collect();
    let unsupported = ["pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"].into_iter().find(|key| on(key));
    match (chosen.as_slice(), unsupported) {
        ([mode], None) => {
            out.insert("pooling_mode".into(), json!(mode));
        }
        _ => {
            return Err(Error::format(
                path,
                "exactly one of pooling_mode_mean_tokens, _cls_token, _weightedmean_tokens, _lasttoken must be true",
            ))
        }
    }
    out.insert(
        "skip_instruction".into(),
        json!(!config.get("include_prompt").and_then(Value::as_bool).unwrap_or(true)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(modules: &str, pooling: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("modules.json"), modules).unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(dir.path().join("1_Pooling/config.json"), pooling).unwrap();
        dir
    }

    const MODULES: &str = r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
                              {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;

    #[test]
    fn mean_pooling_without_normalize_or_length() {
        let dir = folder(MODULES, r#"{"pooling_mode_mean_tokens": true}"#);
        let got = settings(dir.path()).unwrap().unwrap();
        assert_eq!(got, json!({"pooling_mode": "mean", "skip_instruction": false}));
    }

    #[test]
    fn unsupported_modules_and_poolings_are_named() {
        let dense = MODULES.replace("Transformer", "Dense");
        let err = settings(folder(&dense, "{}").path()).unwrap_err().to_string();
        assert!(err.contains("modules.json") && err.contains("Dense"), "{err}");
        let max = folder(MODULES, r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#);
        let err = settings(max.path()).unwrap_err().to_string();
        assert!(err.contains("1_Pooling/config.json") && err.contains("exactly one"), "{err}");
    }

    #[test]
    fn a_folder_without_modules_has_no_settings() {
        assert!(settings(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }
}
