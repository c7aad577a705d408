"""Reference numbers for llm2vec-train's loss and LoRA tests, from PyTorch and PEFT.

Writes crates/llm2vec-train/tests/fixtures/train_reference.json (inputs, losses, gradients)
and crates/llm2vec-train/tests/fixtures/peft_adapter/ (an adapter saved by PEFT itself).
The losses follow the reference llm2vec: MNTP cross-entropy on logits[:, :-1] against
labels[:, 1:] (ignore -100); HardNegativeNLLLoss = cross-entropy over scale x cosine
similarity of queries against positives followed by hard negatives.

    .venv-ref/bin/python scripts/reference/make_train_fixtures.py
"""

import json
import os
import shutil

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "llm2vec-train", "tests", "fixtures")
torch.manual_seed(0)


def tolist(t):
    return t.detach().double().reshape(-1).tolist()


def mntp_case():
    logits = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[5, 2, -100, 4], [-100, -100, 1, 0]])
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 6), labels[:, 1:].reshape(-1), ignore_index=-100)
    loss.backward()
    return {"shape": [2, 4, 6], "logits": tolist(logits), "labels": labels.reshape(-1).tolist(),
            "loss": loss.item(), "grad": tolist(logits.grad)}


def contrastive(q, d, scale):
    scores = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T * scale
    return F.cross_entropy(scores, torch.arange(q.shape[0]))


def contrastive_case():
    q = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    p = torch.randn(3, 5, dtype=torch.float64)
    n = torch.randn(3, 5, dtype=torch.float64)
    sup = contrastive(q, torch.cat([p, n]), 50.0)
    sup.backward()
    simcse = contrastive(q.detach(), p, 20.0)
    return {"q": tolist(q), "p": tolist(p), "n": tolist(n), "supervised_loss": sup.item(),
            "supervised_grad_q": tolist(q.grad), "simcse_loss": simcse.item()}


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.proj(x)


def lora_case():
    model = Tiny().double()
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=6, lora_dropout=0.0, target_modules=["proj"]))
    layer = peft_model.base_model.model.proj
    with torch.no_grad():
        layer.lora_B["default"].weight.copy_(torch.randn(3, 2, dtype=torch.float64))
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, dtype=torch.float64)
    y = peft_model(x)
    (y * g).sum().backward()
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    case = {"w": tolist(layer.base_layer.weight), "a": tolist(a), "b": tolist(b), "r": 2, "alpha": 6.0,
            "x": tolist(x), "g": tolist(g), "y": tolist(y), "grad_x": tolist(x.grad),
            "grad_a": tolist(a.grad), "grad_b": tolist(b.grad),
            "weight_has_grad": layer.base_layer.weight.grad is not None}
    out = os.path.join(ROOT, "peft_adapter")
    shutil.rmtree(out, ignore_errors=True)
    peft_model.float().save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))
    return case


def main():
    os.makedirs(ROOT, exist_ok=True)
    fixture = {"mntp": mntp_case(), "contrastive": contrastive_case(), "lora": lora_case()}
    with open(os.path.join(ROOT, "train_reference.json"), "w") as f:
        json.dump(fixture, f, indent=1)


if __name__ == "__main__":
    main()
