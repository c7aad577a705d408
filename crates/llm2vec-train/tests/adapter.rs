//! Adapter save/load round trip in PEFT key names, and seeded LoRA dropout.

use candle_core::{Device, Tensor};
mod common;

use common::LoraLinear;
use llm2vec::model::ops::{lora_linear, Part};
use llm2vec::model::{LowRank, Projection, Site};
use llm2vec_train::lora::{load_adapter, LoraModel, LoraSettings};
use llm2vec_train::rng::Rng;

fn weight(out: usize, inp: usize) -> Tensor {
    let v: Vec<f32> = (0..out * inp).map(|i| i as f32 * 0.1).collect();
    Tensor::from_vec(v, (out, inp), &Device::Cpu).unwrap()
}

#[test]
fn save_and_load_round_trip() {
    let s = LoraSettings { r: 2, lora_alpha: 4.0, lora_dropout: 0.05 };
    let sites = [
        (Site { layer: 0, proj: Projection::Q }, 4, 3),
        (Site { layer: 0, proj: Projection::V }, 4, 5),
        (Site { layer: 0, proj: Projection::Down }, 4, 4),
    ];
    let model =
        LoraModel::new(&sites, &[Projection::Q, Projection::V], &s, 1, candle_core::DType::F32, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path(), Some("tiny".into())).unwrap();
    let raw = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let keys = candle_core::safetensors::load_buffer(&raw, &Device::Cpu).unwrap();
    assert_eq!(keys.len(), 4, "Down is not a target");
    assert!(keys.contains_key("base_model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(keys.contains_key("base_model.model.layers.0.self_attn.v_proj.lora_B.weight"));
    let loaded = load_adapter(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.config, s.adapter_config(vec!["q_proj".into(), "v_proj".into()], Some("tiny".into())));
    let vars = model.vars();
    for (k, name) in ["layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj"].iter().enumerate() {
        let (a, b) = &loaded.weights[*name];
        assert_eq!(a.to_vec2::<f32>().unwrap(), vars[2 * k].as_tensor().to_vec2::<f32>().unwrap());
        assert_eq!(b.to_vec2::<f32>().unwrap(), vars[2 * k + 1].as_tensor().to_vec2::<f32>().unwrap());
    }
    assert!(load_adapter(&dir.path().join("missing"), &Device::Cpu).is_err());
}

#[test]
fn init_matches_peft_and_dropout_is_seeded() {
    let s = LoraSettings { r: 4, lora_alpha: 8.0, lora_dropout: 0.5 };
    let lin = LoraLinear::new(weight(3, 16), &s, &mut Rng::new(2)).unwrap();
    let [a, b] = lin.vars();
    let bound = 1.0 / 4.0; // 1/sqrt(in = 16)
    let a: Vec<f32> = a.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert!(a.iter().all(|x| x.abs() <= bound) && a.iter().any(|x| *x != 0.0));
    assert!(b.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|x| *x == 0.0));
    let x = Tensor::ones((2, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
    let base = lin.forward(&x, None).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(base, x.matmul(&weight(3, 16).t().unwrap()).unwrap().to_vec2::<f32>().unwrap());
    // Dropout masks depend only on their seed. With x and A all ones, each output's update is the sum of
    // the kept inputs scaled by 1 / (1 - p) = 2: an even number.
    let ones = |shape: (usize, usize)| Tensor::ones(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
    let update = LowRank { a: ones((1, 16)), b: ones((3, 1)), scale: 1.0, dropout: 0.5 };
    let drop = |seed| {
        let part = Part { width: 3, update: Some((update.clone(), Some(seed))) };
        lora_linear(&x, &weight(3, 16).t().unwrap(), None, &[part]).unwrap().to_vec2::<f32>().unwrap()
    };
    let (d1, d2) = (drop(3), drop(3));
    assert_eq!(d1, d2);
    assert_ne!(d1, drop(4));
    for (row, base) in d1.iter().zip(&base) {
        let even = |u: f32| (u / 2.0 - (u / 2.0).round()).abs() < 1e-4 && (-1e-4..=32.0001).contains(&u);
        assert!(row.iter().zip(base).all(|(v, b)| even(v - b)), "{row:?} over {base:?}");
    }
}
