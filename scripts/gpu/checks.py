#!/usr/bin/env python3
"""The checks of `scripts/gpu-check.sh run`: our CUDA build against our CPU path, on prepared binaries, each check
under a time limit so the whole run fits a few minutes of GPU time. Prints a PASS/FAIL table and writes results.json.

Checks (the device is --device; on a CPU-only machine `--device cpu` runs the same logic against itself):
  encode-<family>-f32/-bf16  every tiny fixture model (tests/fixtures/parity): the device's f32 embeddings within
                             1e-4 relative (per row) of the CPU's f32; bf16 within BF16_MIN_COSINE cosine.
  encode-smollm2-f32/-bf16   the same on a random-weight model of SmolLM2-135M's shape (made here with torch).
  batch-invariance           batch size 1, 64, and 64 within 256 padded tokens give the same embeddings (f32, 1e-4).
  eval                       `llm2vec eval --device` on STS-B test gives the CPU's scores (within 1e-4; llama fixture).
  serve                      `llm2vec serve --device` answers /v1/embeddings with `llm2vec encode --normalize`'s rows.
  python                     the Python package with device=... gives the CLI's embeddings.
  train-device-tests         llm2vec-train's `device` test executable with LLM2VEC_TEST_DEVICE set.
  train-simcse               `llm2vec train simcse --device --dtype bf16`, 50 steps on the SmolLM2-shaped model:
                             finite losses, the last ten steps' mean below the first ten's.

    python scripts/gpu/checks.py --bundle DIR --device cuda:0 --results DIR [--budget 450] [--only NAME,...]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts", "bench"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encode_stsb import agreement  # noqa: E402
from make_models import make  # noqa: E402
from train_step import train_config  # noqa: E402

FIXTURES = os.path.join(REPO, "crates", "llm2vec", "tests", "fixtures", "parity")
FAMILIES = ["llama", "mistral", "qwen2", "gemma", "gemma2", "bert-cls", "bert-mean"]
F32_MAX_REL = 1e-4
SMOLLM2_SHARED = 0.06  # anisotropy of the random SmolLM2 (make_models.py --shared): SimCSE has work to do
SERVE_CHUNK = 32  # the server's default --max-client-batch-size
BF16_MIN_COSINE = 0.99  # bf16 keeps 8 bits of mantissa; the tiny fixtures' large weights amplify rounding


class CheckError(Exception):
    """A check that ran and failed, or could not run (MISSING when `missing`)."""

    def __init__(self, message, missing=False):
        super().__init__(message)
        self.missing = missing


class Context:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.join(args.bundle, "bin", "llm2vec")
        self.work = tempfile.mkdtemp(prefix="gpu-check-", dir=args.work)
        self.deadline = time.monotonic() + args.budget
        self.smol = None
        self.encoded = {}
        self.texts = os.path.join(self.work, "texts.txt")
        sentences = read_lines(os.path.join(args.bundle, "data", "sentences.txt"))
        write_lines(self.texts, sentences[: args.texts])

    def run(self, cmd, timeout, env=None):
        """Runs a command from the repository root under the smaller of `timeout` and the time left; CheckError
        on failure."""
        limit = max(1.0, min(timeout, self.deadline - time.monotonic()))
        try:
            proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=limit,
                                  env=dict(os.environ, **(env or {})), cwd=REPO)
        except subprocess.TimeoutExpired:
            raise CheckError(f"timed out after {limit:.0f} s: {' '.join(map(str, cmd[:4]))} ...")
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            usage = proc.returncode == 2 and "unexpected argument" in proc.stderr
            raise CheckError(f"exit {proc.returncode}: {' | '.join(tail)}", missing=usage)
        return proc

    def encode(self, model, device, dtype="f32", batch=32, extra=()):
        """`llm2vec encode` of the check texts; each distinct call runs once."""
        key = (model, device, dtype, batch, tuple(extra))
        if key not in self.encoded:
            out = os.path.join(self.work, f"e-{len(self.encoded)}.npy")
            self.run([self.bin, "encode", "--model", model, "--input", self.texts, "--output", out, "--device",
                      device, "--dtype", dtype, "--batch-size", str(batch), *extra], timeout=120)
            self.encoded[key] = np.load(out)
        return self.encoded[key]

    def smollm2(self):
        """The SmolLM2-shaped random model in f32, made once with torch on the checked device."""
        if self.smol is None:
            self.smol = os.path.join(self.work, "smollm2-135m")
            make("smollm2-135m", os.path.join(self.args.bundle, "tokenizer"), self.smol, "f32", self.args.device,
                 layers=self.args.smol_layers, shared=SMOLLM2_SHARED)
        return self.smol


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def compare(a, b):
    """(max per-row relative L2 difference, min cosine) of two embedding matrices."""
    found = agreement(a, b)
    if "min_cosine" not in found:
        raise CheckError(f"shapes differ: {a.shape} vs {b.shape}")
    if not found["finite"]:
        raise CheckError("non-finite embeddings")
    return found["max_rel_diff_row"], found["min_cosine"]


def within_f32(a, b):
    rel, cos = compare(a, b)
    if rel > F32_MAX_REL:
        raise CheckError(f"max relative difference {rel:.2e} > {F32_MAX_REL:.0e}")
    return f"max rel diff {rel:.2e}, min cos {cos:.6f}"


def within_bf16(a, b):
    rel, cos = compare(a, b)
    if cos < BF16_MIN_COSINE:
        raise CheckError(f"min cosine {cos:.4f} < {BF16_MIN_COSINE}")
    return f"min cos {cos:.5f}, max rel diff {rel:.2e}"


# ------------------------------------------------------------------------------------------------ the checks

def encode_checks(family):
    model = os.path.join(FIXTURES, family, "model") if not family.startswith("bert") else os.path.join(FIXTURES, family)

    def f32(ctx):
        return within_f32(ctx.encode(model, ctx.args.device), ctx.encode(model, "cpu"))

    def bf16(ctx):
        return within_bf16(ctx.encode(model, ctx.args.device, "bf16"), ctx.encode(model, "cpu"))

    return [(f"encode-{family}-f32", f32), (f"encode-{family}-bf16", bf16)]


def smollm2_f32(ctx):
    return within_f32(ctx.encode(ctx.smollm2(), ctx.args.device), ctx.encode(ctx.smollm2(), "cpu"))


def smollm2_bf16(ctx):
    return within_bf16(ctx.encode(ctx.smollm2(), ctx.args.device, "bf16"), ctx.encode(ctx.smollm2(), "cpu"))


def batch_invariance(ctx):
    """Batches of 64 inputs, and batches cut by a budget of 256 padded tokens, give batch size 1's rows."""
    one = ctx.encode(ctx.smollm2(), ctx.args.device, batch=1)
    within_f32(ctx.encode(ctx.smollm2(), ctx.args.device, batch=64, extra=("--max-batch-tokens", "256")), one)
    return within_f32(ctx.encode(ctx.smollm2(), ctx.args.device, batch=64), one)


def eval_scores(ctx, device):
    model = os.path.join(FIXTURES, "llama", "model")
    out = os.path.join(ctx.work, f"eval-{device.replace(':', '')}")
    ctx.run([ctx.bin, "eval", "--model", model, "--tasks", "STSBenchmark", "--no-cache", "--device", device,
             "--data-dir", os.path.join(ctx.args.bundle, "data", "tasks"), "--output", out], timeout=120)
    with open(os.path.join(out, "STSBenchmark.json")) as f:
        return json.load(f)["scores"]["test"][0]


def evaluate(ctx):
    here, cpu = eval_scores(ctx, ctx.args.device), eval_scores(ctx, "cpu")
    keys = [k for k in cpu if k.startswith(("cosine", "euclidean", "manhattan"))]
    worst = max(keys, key=lambda k: abs(here[k] - cpu[k]))
    if abs(here[worst] - cpu[worst]) > F32_MAX_REL:
        raise CheckError(f"{worst}: {here[worst]:.6f} on {ctx.args.device}, {cpu[worst]:.6f} on the CPU")
    return f"cosine_spearman {here['cosine_spearman']:.6f}; largest difference {abs(here[worst] - cpu[worst]):.1e}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url, body, timeout):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise CheckError(f"{url}: HTTP {e.code}: {e.read()[:300]!r}")


def wait_healthy(url, server, deadline):
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckError(f"server exited with {server.returncode}; see serve.log")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise CheckError("the server was not healthy in time")


def serve(ctx):
    texts = read_lines(ctx.texts)
    base = f"http://127.0.0.1:{free_port()}"
    log = open(os.path.join(ctx.work, "serve.log"), "w")
    server = subprocess.Popen([ctx.bin, "serve", "--model", ctx.smollm2(), "--device", ctx.args.device,
                               "--host", "127.0.0.1", "--port", base.rsplit(":", 1)[1]],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base + "/health", server, min(ctx.deadline, time.monotonic() + 120))
        rows = []
        for i in range(0, len(texts), SERVE_CHUNK):
            answer = post_json(base + "/v1/embeddings", {"input": texts[i:i + SERVE_CHUNK]}, timeout=120)
            rows += [r["embedding"] for r in sorted(answer["data"], key=lambda r: r["index"])]
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return within_f32(np.array(rows), ctx.encode(ctx.smollm2(), ctx.args.device, extra=["--normalize"]))


def python_package(ctx):
    script = (
        "import sys, numpy as np\n"
        "from llm2vec_rs import LLM2Vec\n"
        "m = LLM2Vec.from_pretrained(sys.argv[1], device=sys.argv[2])\n"
        "texts = [l.rstrip('\\n') for l in open(sys.argv[3], encoding='utf-8') if l.strip()]\n"
        "np.save(sys.argv[4], m.encode(texts, batch_size=32, show_progress_bar=False))\n"
    )
    out = os.path.join(ctx.work, "python.npy")
    try:
        device = "cuda" if ctx.args.device == "cuda:0" else ctx.args.device  # the reference's spelling
        ctx.run([sys.executable, "-c", script, ctx.smollm2(), device, ctx.texts, out], timeout=180)
    except CheckError as e:
        if "No module named 'llm2vec_rs" in str(e):
            raise CheckError("the llm2vec_rs wheel is not in the bundle", missing=True)
        raise
    return within_f32(np.load(out), ctx.encode(ctx.smollm2(), ctx.args.device))


def reach_build_checkout(bundle):
    """Test executables find their fixtures through the checkout they were built in (CARGO_MANIFEST_DIR, fixed at
    compile time): where that path is missing here, it becomes a link to this checkout."""
    with open(os.path.join(bundle, "manifest.json")) as f:
        built_in = json.load(f).get("repo")
    if built_in and not os.path.exists(built_in):
        os.makedirs(os.path.dirname(built_in), exist_ok=True)
        os.symlink(REPO, built_in)
        print(f"linked {built_in} -> {REPO} for the test executables' fixtures", file=sys.stderr)


def train_device_tests(ctx):
    binary = os.path.join(ctx.args.bundle, "tests", "device")
    if not os.path.exists(binary):
        raise CheckError("llm2vec-train has no `device` test executable in the bundle", missing=True)
    reach_build_checkout(ctx.args.bundle)
    proc = ctx.run([binary, "--test-threads", "1"], timeout=240, env={"LLM2VEC_TEST_DEVICE": ctx.args.device})
    summary = [line for line in proc.stdout.splitlines() if line.startswith("test result:")]
    return summary[-1] if summary else "passed"


def train_simcse(ctx):
    steps = ctx.args.train_steps
    out = os.path.join(ctx.work, "simcse")
    config = train_config("simcse", ctx.smollm2(), os.path.join(ctx.args.bundle, "data", "train"), batch=32, seq_len=64,
                          steps=steps, output_dir=out, learning_rate=1e-4)
    path = os.path.join(ctx.work, "simcse.json")
    with open(path, "w") as f:
        json.dump(config, f)
    flags = [] if ctx.args.device == "cpu" else ["--device", ctx.args.device, "--dtype", "bf16"]
    ctx.run([ctx.bin, "train", "simcse", path, *flags], timeout=300)
    losses = [json.loads(line)["loss"] for line in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in line]
    if len(losses) < steps or not np.isfinite(losses).all():
        raise CheckError(f"{len(losses)} logged losses of {steps}, finite: {bool(np.isfinite(losses).all())}")
    first, last = statistics.mean(losses[:10]), statistics.mean(losses[-10:])
    if not last < first:
        raise CheckError(f"loss did not fall: first ten {first:.4f}, last ten {last:.4f}")
    return f"{steps} steps, mean loss {first:.4f} (first ten) -> {last:.4f} (last ten)"


def all_checks():
    checks = [c for family in FAMILIES for c in encode_checks(family)]
    return checks + [
        ("encode-smollm2-f32", smollm2_f32), ("encode-smollm2-bf16", smollm2_bf16),
        ("batch-invariance", batch_invariance), ("eval", evaluate), ("serve", serve), ("python", python_package),
        ("train-device-tests", train_device_tests), ("train-simcse", train_simcse),
    ]


# ------------------------------------------------------------------------------------------------ the driver

def run_checks(ctx, checks):
    results = []
    for name, check in checks:
        start = time.monotonic()
        if start >= ctx.deadline:
            status, detail = "SKIP", "out of time"
        else:
            try:
                status, detail = "PASS", check(ctx)
            except CheckError as e:
                status, detail = ("MISSING" if e.missing else "FAIL"), str(e)
            except Exception as e:  # a bug in a check is its failure, not the end of the run
                status, detail = "FAIL", f"{type(e).__name__}: {e}"
        results.append({"check": name, "status": status, "seconds": round(time.monotonic() - start, 1),
                        "detail": detail})
        print(f"{status:7s} {name:28s} {results[-1]['seconds']:6.1f} s  {detail}", flush=True)
    return results


def table(results, device):
    width = max(len(r["check"]) for r in results)
    lines = [f"device: {device}", f"{'check':{width}s}  status   seconds  detail"]
    lines += [f"{r['check']:{width}s}  {r['status']:7s}  {r['seconds']:7.1f}  {r['detail']}" for r in results]
    counts = {s: sum(r["status"] == s for r in results) for s in ("PASS", "FAIL", "MISSING", "SKIP")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="the unpacked bundle (bin/, tests/, data/, tokenizer/)")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--results", required=True, help="folder for results.json and table.txt")
    p.add_argument("--work", default=None, help="scratch folder (default: the system's temporary folder)")
    p.add_argument("--budget", type=float, default=450, help="seconds for all checks together")
    p.add_argument("--only", default="", help="comma-separated check names (default: all)")
    p.add_argument("--texts", type=int, default=256, help="STS-B sentences each encode check embeds")
    p.add_argument("--smol-layers", type=int, default=None, help="fewer layers for the SmolLM2 shape (quick runs)")
    p.add_argument("--train-steps", type=int, default=50)
    args = p.parse_args()
    checks = all_checks()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {name for name, _ in checks}
        if unknown:
            sys.exit(f"error: unknown checks {sorted(unknown)}; known: {[n for n, _ in checks]}")
        checks = [c for c in checks if c[0] in wanted]
    ctx = Context(args)
    results = run_checks(ctx, checks)
    os.makedirs(args.results, exist_ok=True)
    text = table(results, args.device)
    for name, content in (("results.json", json.dumps(results, indent=1)), ("table.txt", text + "\n")):
        with open(os.path.join(args.results, name + ".tmp"), "w") as f:
            f.write(content)
        os.replace(os.path.join(args.results, name + ".tmp"), os.path.join(args.results, name))
    print("\n" + text)
    return 1 if any(r["status"] == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
