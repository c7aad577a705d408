//! Adapter save/load round trip in PEFT key names, and seeded LoRA dropout.

use candle_core::{Device, Tensor};
use llm2vec_train::lora::{load_adapter, save_adapter, AdapterConfig, LoraLinear, LoraSettings};
use llm2vec_train::rng::Rng;

fn weight(out: usize, inp: usize) -> Tensor {
    let v: Vec<f32> = (0..out * inp).map(|i| i as f32 * 0.1).collect();
    Tensor::from_vec(v, (out, inp), &Device::Cpu).unwrap()
}

#[test]
fn save_and_load_round_trip() {
    let s = LoraSettings {
        r: 2,
        lora_alpha: 4.0,
        lora_dropout: 0.05,
    };
    let mut rng = Rng::new(1);
    let q = LoraLinear::new(weight(3, 4), &s, &mut rng).unwrap();
    let v = LoraLinear::new(weight(5, 4), &s, &mut rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = AdapterConfig::new(
        &s,
        vec!["q_proj".into(), "v_proj".into()],
        Some("tiny".into()),
    );
    let modules = [
        ("layers.0.self_attn.q_proj", &q),
        ("layers.0.self_attn.v_proj", &v),
    ];
    save_adapter(dir.path(), &modules, &cfg).unwrap();
    let raw = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let keys = candle_core::safetensors::load_buffer(&raw, &Device::Cpu).unwrap();
    assert!(keys.contains_key("base_model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(keys.contains_key("base_model.model.layers.0.self_attn.v_proj.lora_B.weight"));
    let loaded = load_adapter(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.config, cfg);
    assert_eq!(loaded.weights.len(), 2);
    for (name, layer) in modules {
        let (a, b) = &loaded.weights[name];
        let [va, vb] = layer.vars();
        assert_eq!(
            a.to_vec2::<f32>().unwrap(),
            va.as_tensor().to_vec2::<f32>().unwrap()
        );
        assert_eq!(
            b.to_vec2::<f32>().unwrap(),
            vb.as_tensor().to_vec2::<f32>().unwrap()
        );
    }
    assert!(load_adapter(&dir.path().join("missing"), &Device::Cpu).is_err());
}

#[test]
fn init_matches_peft_and_dropout_is_seeded() {
    let s = LoraSettings {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.5,
    };
    let lin = LoraLinear::new(weight(3, 16), &s, &mut Rng::new(2)).unwrap();
    let [a, b] = lin.vars();
    let bound = 1.0 / 4.0; // 1/sqrt(in = 16)
    let a: Vec<f32> = a.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert!(a.iter().all(|x| x.abs() <= bound) && a.iter().any(|x| *x != 0.0));
    assert!(b
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| *x == 0.0));
    let x = Tensor::ones((2, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
    let base = lin.forward(&x, None).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(
        base,
        x.matmul(&weight(3, 16).t().unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
    let d1 = llm2vec_train::lora::dropout(&x, 0.5, &mut Rng::new(3))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let d2 = llm2vec_train::lora::dropout(&x, 0.5, &mut Rng::new(3))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(d1, d2);
    assert!(d1.iter().flatten().all(|&v| v == 0.0 || v == 2.0));
}
