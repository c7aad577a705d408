#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (small, deterministic; standard library only).

    python3 fuzz/gen_seeds.py            # from the repository root, or anywhere

Seeds are valid (or nearly valid) inputs that take each target past its first checks: tiny GGUF files (every
metadata type, one block of every ggml type, loadable Llama/Qwen2/Gemma models with SentencePiece and
byte-level BPE vocabularies), safetensors files of every dtype, model configs, LoRA adapters, input files,
server request bodies, training configs, training checkpoints and embedding cache shards.
"""

import json
import os
import random
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds")
REPO = os.path.dirname(HERE)
rng = random.Random(1234)

# --------------------------------------------------------------------------------------------------------
# GGUF

# (name, id, elements per block, bytes per block), as ggml's type traits.
GGML_TYPES = [
    ("F32", 0, 1, 4), ("F16", 1, 1, 2), ("Q4_0", 2, 32, 18), ("Q4_1", 3, 32, 20), ("Q5_0", 6, 32, 22),
    ("Q5_1", 7, 32, 24), ("Q8_0", 8, 32, 34), ("Q8_1", 9, 32, 36), ("Q2_K", 10, 256, 84), ("Q3_K", 11, 256, 110),
    ("Q4_K", 12, 256, 144), ("Q5_K", 13, 256, 176), ("Q6_K", 14, 256, 210), ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66), ("IQ2_XS", 17, 256, 74), ("IQ3_XXS", 18, 256, 98), ("IQ1_S", 19, 256, 50),
    ("IQ4_NL", 20, 32, 18), ("IQ3_S", 21, 256, 110), ("IQ2_S", 22, 256, 82), ("IQ4_XS", 23, 256, 136),
    ("I8", 24, 1, 1), ("I16", 25, 1, 2), ("I32", 26, 1, 4), ("I64", 27, 1, 8), ("F64", 28, 1, 8),
    ("IQ1_M", 29, 256, 56), ("BF16", 30, 1, 2), ("TQ1_0", 34, 256, 54), ("TQ2_0", 35, 256, 66),
    ("MXFP4", 39, 32, 17),
]
TYPE_IDS = {name: tid for name, tid, _, _ in GGML_TYPES}

# GGUF metadata value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
              U64: "<Q", I64: "<q", F64: "<d"}


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(ty, v):
    if ty == STR:
        return gguf_str(v)
    if ty == ARR:
        elem_ty, items = v
        out = struct.pack("<IQ", elem_ty, len(items))
        return out + b"".join(gguf_value(elem_ty, x) for x in items)
    return struct.pack(SCALAR_FMT[ty], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims in GGUF order, type name, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, ty, v in kvs:
        out += gguf_str(key) + struct.pack("<I", ty) + gguf_value(ty, v)
    offset = 0
    data = b""
    for name, dims, ty, raw in tensors:
        pad = (-offset) % alignment
        data += b"\0" * pad
        offset += pad
        out += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", TYPE_IDS[ty], offset)
        data += raw
        offset += len(raw)
    out += b"\0" * ((-len(out)) % alignment)
    return out + data


def f32s(values):
    return struct.pack("<%df" % len(values), *values)


def small_floats(n, scale=0.1):
    return [round(rng.uniform(-scale, scale), 4) for _ in range(n)]


def q8_0(values):
    """ggml's Q8_0: per 32 values an f16 scale and 32 int8."""
    out = b""
    for i in range(0, len(values), 32):
        block = values[i:i + 32]
        amax = max(abs(x) for x in block) or 1.0
        d = amax / 127
        out += struct.pack("<e", d) + struct.pack("<32b", *[max(-127, min(127, round(x / d))) for x in block])
    return out


def quants_gguf():
    """Every metadata type, and one block of every ggml type (random bytes, so any scale is possible)."""
    kvs = [
        ("general.architecture", STR, "llama"),
        ("general.alignment", U32, 32),
        ("test.u8", U8, 200), ("test.i8", I8, -100), ("test.u16", U16, 60000), ("test.i16", I16, -30000),
        ("test.u32", U32, 4_000_000_000), ("test.i32", I32, -2_000_000_000), ("test.u64", U64, 1 << 62),
        ("test.i64", I64, -(1 << 62)), ("test.f32", F32, 0.5), ("test.f64", F64, -0.25), ("test.bool", BOOL, True),
        ("test.string", STR, "héllo ▁ world"),
        ("test.array.u16", ARR, (U16, [1, 2, 65535])),
        ("test.array.f32", ARR, (F32, [1.5, -2.0])),
        ("test.array.bool", ARR, (BOOL, [True, False])),
        ("test.array.string", ARR, (STR, ["a", "bc", ""])),
        ("test.array.nested", ARR, (ARR, [(I32, [1, 2]), (I32, [3])])),
    ]
    tensors = []
    for name, _, bs, ts in GGML_TYPES:
        n_blocks = 4 if bs == 1 else 1
        raw = bytes(rng.randrange(256) for _ in range(n_blocks * ts))
        dims = [bs * n_blocks] if bs > 1 else [2, 2]
        tensors.append((name.lower(), dims, name, raw))
    # A real-looking F32 tensor and a Llama-named Q8_0 one (row un-permutation shapes).
    tensors.append(("blk.0.attn_q.weight", [32, 4], "Q8_0", q8_0(small_floats(128))))
    tensors.append(("f32_3d", [4, 3, 2], "F32", f32s(small_floats(24))))
    return gguf(kvs, tensors)


SPM_PIECES = ["<unk>", "<s>", "</s>", "▁", "a", "b", "c", "▁a", "▁b", "ab", "▁ab", "▁abc", "<0x0A>", "<0x20>",
              "<user>", "1", "2", "3", "▁1"]


def spm_vocab(pad_to):
    tokens = SPM_PIECES + ["x%d" % i for i in range(pad_to - len(SPM_PIECES))]
    types = [2, 3, 3] + [1] * (len(tokens) - 3)
    types[SPM_PIECES.index("<0x0A>")] = 6
    types[SPM_PIECES.index("<0x20>")] = 6
    types[SPM_PIECES.index("<user>")] = 4
    scores = [0.0, 0.0, 0.0] + [-float(i) for i in range(len(tokens) - 3)]
    return [
        ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        ("tokenizer.ggml.scores", ARR, (F32, scores)),
        ("tokenizer.ggml.token_type", ARR, (I32, types)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.ggml.add_eos_token", BOOL, False),
    ]


def bpe_vocab(pad_to, pre):
    byte_tokens = ["Ġ", "a", "b", "c", "1", "2", "H", "e", "l", "o"]
    merged = ["Ġa", "ab", "Ġab", "He", "ll", "Hell", "Hello"]
    specials = ["<|endoftext|>", "<|im_start|>"]
    tokens = byte_tokens + merged + specials
    tokens += ["y%d" % i for i in range(pad_to - len(tokens))]
    merges = ["Ġ a", "a b", "Ġa b", "H e", "l l", "He ll", "Hell o"]
    types = [1] * len(tokens)
    for s in specials:
        types[tokens.index(s)] = 3
    eos = tokens.index("<|endoftext|>")
    return [
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, pre),
        ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        ("tokenizer.ggml.token_type", ARR, (I32, types)),
        ("tokenizer.ggml.merges", ARR, (STR, merges)),
        ("tokenizer.ggml.bos_token_id", U32, eos),
        ("tokenizer.ggml.eos_token_id", U32, eos),
        ("tokenizer.ggml.padding_token_id", U32, eos),
        ("tokenizer.ggml.add_bos_token", BOOL, False),
    ]


def model_gguf(arch, vocab_kvs, n_vocab, quant, extra_kvs=(), extra_tensors=(), tied=True):
    """A one-layer model of `arch`: hidden 32, 4 heads of 8, 2 KV heads, FFN 32 when quantized (Q8_0 blocks
    hold 32 values); hidden 8, 2 heads of 4, 1 KV head, FFN 16 in F32."""
    if quant == "Q8_0":
        hidden, n_head, n_kv, head_dim, ffn = 32, 4, 2, 8, 32
    else:
        hidden, n_head, n_kv, head_dim, ffn = 8, 2, 1, 4, 16
    kvs = [
        ("general.architecture", STR, arch),
        ("general.name", STR, "tiny-" + arch),
        (arch + ".block_count", U32, 1),
        (arch + ".embedding_length", U32, hidden),
        (arch + ".feed_forward_length", U32, ffn),
        (arch + ".attention.head_count", U32, n_head),
        (arch + ".attention.head_count_kv", U32, n_kv),
        (arch + ".context_length", U32, 128),
        (arch + ".attention.layer_norm_rms_epsilon", F32, 1e-5),
        (arch + ".rope.freq_base", F32, 10000.0),
    ] + list(extra_kvs) + vocab_kvs

    def mat(name, inner, outer):
        values = small_floats(inner * outer)
        raw = q8_0(values) if quant == "Q8_0" else f32s(values)
        return (name, [inner, outer], quant, raw)

    def vec(name, n, center=1.0):
        return (name, [n], "F32", f32s([center + x for x in small_floats(n, 0.01)]))

    tensors = [
        mat("token_embd.weight", hidden, n_vocab),
        vec("output_norm.weight", hidden),
        vec("blk.0.attn_norm.weight", hidden),
        mat("blk.0.attn_q.weight", hidden, n_head * head_dim),
        mat("blk.0.attn_k.weight", hidden, n_kv * head_dim),
        mat("blk.0.attn_v.weight", hidden, n_kv * head_dim),
        mat("blk.0.attn_output.weight", n_head * head_dim, hidden),
        vec("blk.0.ffn_norm.weight", hidden),
        mat("blk.0.ffn_gate.weight", hidden, ffn),
        mat("blk.0.ffn_up.weight", hidden, ffn),
        mat("blk.0.ffn_down.weight", ffn, hidden),
    ] + list(extra_tensors)
    if not tied:
        tensors.append(mat("output.weight", hidden, n_vocab))
    return gguf(kvs, tensors)


def gguf_seeds():
    llama = model_gguf("llama", spm_vocab(32), 32, "Q8_0")
    qwen2 = model_gguf(
        "qwen2", bpe_vocab(24, "qwen2"), 24, "F32",
        extra_tensors=[("blk.0.attn_q.bias", [8], "F32", f32s(small_floats(8))),
                       ("blk.0.attn_k.bias", [4], "F32", f32s(small_floats(4))),
                       ("blk.0.attn_v.bias", [4], "F32", f32s(small_floats(4)))])
    gemma3 = model_gguf(
        "gemma3", spm_vocab(32), 32, "Q8_0",
        extra_kvs=[("gemma3.attention.key_length", U32, 8), ("gemma3.attention.value_length", U32, 8),
                   ("gemma3.attention.sliding_window", U32, 64)],
        extra_tensors=[("blk.0.attn_q_norm.weight", [8], "F32", f32s([1.0] * 8)),
                       ("blk.0.attn_k_norm.weight", [8], "F32", f32s([1.0] * 8)),
                       ("blk.0.post_attention_norm.weight", [32], "F32", f32s([1.0] * 32)),
                       ("blk.0.post_ffw_norm.weight", [32], "F32", f32s([1.0] * 32))])
    smollm = model_gguf("llama", bpe_vocab(24, "smollm"), 24, "F32", tied=False)
    minimal_v2 = gguf([("general.architecture", STR, "gemma")], [], version=2)
    return {
        "gguf": {"quants.gguf": quants_gguf(), "minimal_v2.gguf": minimal_v2, "qwen2_bpe.gguf": qwen2},
        "gguf_load": {"llama_spm.gguf": llama, "qwen2_bpe.gguf": qwen2, "gemma3_spm.gguf": gemma3,
                      "llama_smollm_bpe.gguf": smollm},
    }


# --------------------------------------------------------------------------------------------------------
# safetensors

def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)]."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def st_f32(name, shape):
    n = 1
    for d in shape:
        n *= d
    return (name, "F32", shape, f32s(small_floats(n)))


def safetensors_seeds():
    every_dtype = safetensors([
        st_f32("model.norm.weight", [4]),
        ("f16", "F16", [2, 2], struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)),
        ("bf16", "BF16", [3], bytes([0x80, 0x3F, 0x00, 0xC0, 0x00, 0x00])),
        ("f64", "F64", [1, 2], struct.pack("<2d", 1.5, -0.25)),
        ("scalar", "F32", [], f32s([3.0])),
        ("empty", "F32", [0, 3], b""),
    ], metadata={"format": "pt"})
    return {
        "safetensors": {
            "every_dtype.safetensors": every_dtype,
            "empty.safetensors": safetensors([]),
            "unsupported_i64.safetensors": safetensors([("ids", "I64", [2], struct.pack("<2q", 1, 2))]),
        }
    }


# --------------------------------------------------------------------------------------------------------
# configs

def config_seeds():
    out = {}
    parity = os.path.join(REPO, "crates/llm2vec/tests/fixtures/parity")
    if os.path.isdir(parity):
        for family in sorted(os.listdir(parity)):
            path = os.path.join(parity, family, "model", "config.json")
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    out["parity_%s.json" % family] = f.read()
    base = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
    configs = {
        "llama3_rope.json": dict(base, model_type="llama", rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}),
        "qwen2_yarn.json": dict(base, model_type="qwen2", attention_bias=True, use_sliding_window=False,
                                rope_scaling={"type": "yarn", "factor": 4.0,
                                              "original_max_position_embeddings": 32768}),
        "mistral_linear.json": dict(base, model_type="mistral", sliding_window=4096,
                                    rope_scaling={"type": "linear", "factor": 2.0}),
        "gemma2.json": dict(base, model_type="gemma2", hidden_activation="gelu_pytorch_tanh", sliding_window=64,
                            attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=8),
        "gemma3.json": {"model_type": "gemma3", "text_config": dict(
            base, sliding_window=64, sliding_window_pattern=6, rope_local_base_freq=10000.0,
            layer_types=["sliding_attention"], query_pre_attn_scalar=8,
            rope_scaling={"rope_type": "linear", "factor": 8.0})},
    }
    for name, c in configs.items():
        out[name] = json.dumps(c, indent=1).encode()
    return {"config": out}


# --------------------------------------------------------------------------------------------------------
# adapters

def adapter_input(config, tensors):
    c = json.dumps(config, separators=(",", ":")).encode()
    assert len(c) < 1 << 16
    return struct.pack("<H", len(c)) + c + safetensors(tensors)


def adapter_seeds():
    cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"],
           "base_model_name_or_path": "tiny/llama", "use_rslora": False, "use_dora": False,
           "fan_in_fan_out": False, "rank_pattern": {}, "alpha_pattern": {}}
    pair = [
        st_f32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [2, 8]),
        st_f32("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [8, 2]),
        st_f32("base_model.model.layers.0.mlp.down_proj.lora_A.weight", [2, 4]),
        st_f32("base_model.model.layers.0.mlp.down_proj.lora_B.weight", [6, 2]),
    ]
    patterns = dict(cfg, use_rslora=True, fan_in_fan_out=True, rank_pattern={"q_proj": 2},
                    alpha_pattern={"layers.0.mlp.down_proj": 1.5})
    out = {"lora.bin": adapter_input(cfg, pair), "lora_patterns.bin": adapter_input(patterns, pair)}
    real = os.path.join(REPO, "crates/llm2vec/tests/fixtures/parity/llama/adapter/adapter_config.json")
    if os.path.isfile(real):
        with open(real) as f:
            out["lora_parity_config.bin"] = adapter_input(json.load(f), pair[:2])
    return {"adapter": out}


# --------------------------------------------------------------------------------------------------------
# inputs

def inputs_seeds():
    return {"inputs": {
        "records.jsonl": b'{"text": "A man is eating food."}\n'
                         b'{"text": "Une femme joue du violon.", "instruction": "Retrieve parallel sentences"}\n'
                         b'{"instruction": null, "text": "\\u00e9t\\u00e9 \\ud83d\\ude00"}\n',
        "crlf.jsonl": b'{"text": "first"}\r\n{"text": "second", "instruction": ""}\r\n',
        "lines.txt": "plain text\nsecond line with ünïcode ▁\n  indented\n".encode(),
        "single.txt": b"one line without newline",
    }}


# --------------------------------------------------------------------------------------------------------
# server request bodies

def server_request_seeds():
    bodies = {
        "openai_one.json": {"input": "A man is eating food.", "model": "llm2vec"},
        "openai_many.json": {"input": ["first", "second ünïcode"], "model": "m", "encoding_format": "base64",
                             "dimensions": 8, "user": "someone"},
        "openai_float.json": {"input": ["x"], "encoding_format": "float", "dimensions": 64},
        "embed_one.json": {"inputs": "A man is eating food."},
        "embed_pairs.json": {"inputs": ["plain", ["Retrieve parallel sentences", "Une femme joue du violon."]],
                             "instruction": "Given a claim, find documents that refute it",
                             "normalize": False, "truncate": True},
    }
    return {"server_request": {name: json.dumps(b).encode() for name, b in bodies.items()}}


# --------------------------------------------------------------------------------------------------------
# training configs

def train_config_seeds():
    out = {}
    configs = os.path.join(REPO, "train_configs")
    if os.path.isdir(configs):
        for stage in sorted(os.listdir(configs)):
            for name in sorted(os.listdir(os.path.join(configs, stage))):
                with open(os.path.join(configs, stage, name), "rb") as f:
                    out["%s_%s" % (stage, name)] = f.read()
    out["minimal.json"] = json.dumps({"model_name_or_path": "m", "train_file": "t.txt", "output_dir": "o"}).encode()
    out["every_field.json"] = json.dumps({
        "model_name_or_path": "m", "peft_model_name_or_path": "p", "tokenizer_name": "t", "dataset_name": "E5",
        "dataset_file_path": "d", "max_seq_length": 512, "line_by_line": True, "mask_token_type": "mask",
        "data_collator_type": "default", "per_device_eval_batch_size": 2, "weight_decay": 0.01,
        "num_train_epochs": 1.5, "max_steps": 100, "lora_dropout": 0.05, "simcse_dropout": 0.3,
        "loss_scale": 20.0, "pooling_mode": "eos_token", "save_steps": 0, "eval_steps": None, "seed": 7,
        "max_train_samples": 10, "max_grad_norm": 0.5, "output_dir": "o", "save_only_model": True,
        "dataloader_num_workers": 4}).encode()
    out["typo.json"] = b'{"model_name_or_pth": "m"}'
    return {"train_config": out}


# --------------------------------------------------------------------------------------------------------
# checkpoints

# The harness's LoRA model: rank 2 on layer 0's q_proj (8 -> 8) and down_proj (16 -> 8).
CHECKPOINT_SITES = [("layers.0.self_attn.q_proj", 8, 8), ("layers.0.mlp.down_proj", 16, 8)]


def checkpoint_input(state, config, adapter, optimizer):
    parts = [json.dumps(state).encode(), json.dumps(config).encode(), adapter]
    assert all(len(p) < 1 << 16 for p in parts)
    return struct.pack("<3H", *map(len, parts)) + b"".join(parts) + optimizer


def checkpoint_seeds():
    r = 2
    adapter, moments = [], []
    for module, inp, out in CHECKPOINT_SITES:
        a = st_f32("base_model.model.%s.lora_A.weight" % module, [r, inp])
        b = st_f32("base_model.model.%s.lora_B.weight" % module, [out, r])
        adapter += [a, b]
        moments += [[r, inp], [out, r]]
    optimizer = []
    for i, shape in enumerate(moments):
        optimizer += [st_f32("m.%d" % i, shape), st_f32("v.%d" % i, shape)]
    optimizer.append(("steps", "U32", [1], struct.pack("<I", 3)))
    config = {"peft_type": "LORA", "base_model_name_or_path": "tiny/llama", "r": r, "lora_alpha": 4.0,
              "lora_dropout": 0.0, "target_modules": ["q_proj", "down_proj"], "bias": "none",
              "fan_in_fan_out": False, "inference_mode": True}
    step = {"step": 3, "loss": 2.5, "learning_rate": 1e-4, "grad_norm": 0.75, "tokens": 1024, "elapsed_seconds": 4.5}
    state = {"stage": "mntp", "step": 3, "planned_steps": 10, "steps": [dict(step, step=i) for i in (1, 2, 3)],
             "evals": [{"step": 3, "metric": "mlm_loss", "value": 2.25}]}
    return {"checkpoint": {
        "checkpoint.bin": checkpoint_input(state, config, safetensors(adapter), safetensors(optimizer)),
        "empty_state.bin": checkpoint_input({"stage": "simcse", "step": 0, "planned_steps": 0, "steps": [],
                                             "evals": []}, config, safetensors(adapter), safetensors(optimizer)),
    }}


# --------------------------------------------------------------------------------------------------------
# evaluation cache shards

def cache_shard(dim, keys):
    out = b"L2VEMB1\n" + struct.pack("<II", dim, len(keys))
    out += b"".join(keys)
    return out + f32s(small_floats(dim * len(keys)))


def eval_cache_seeds():
    keys = [bytes(range(i, i + 32)) for i in range(3)]
    return {"eval_cache": {
        "shard.bin": cache_shard(4, keys),
        "duplicate_keys.bin": cache_shard(2, [keys[0], keys[0]]),
        "empty.bin": cache_shard(8, []),
    }}


def main():
    seeds = {}
    for part in (gguf_seeds(), safetensors_seeds(), config_seeds(), adapter_seeds(), inputs_seeds(),
                 server_request_seeds(), train_config_seeds(), checkpoint_seeds(), eval_cache_seeds()):
        seeds.update(part)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    total = 0
    for target, files in sorted(seeds.items()):
        os.makedirs(os.path.join(OUT, target))
        for name, data in sorted(files.items()):
            with open(os.path.join(OUT, target, name), "wb") as f:
                f.write(data)
            total += len(data)
        print("%-14s %2d seeds, %6d bytes" % (target, len(files), sum(len(d) for d in files.values())))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
