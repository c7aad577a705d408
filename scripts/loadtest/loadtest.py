#!/usr/bin/env python3
"""Load test for `llm2vec serve` (standard library only; loopback only; bounded in requests and time).

In one run, against the same texts and the same binary:
  1. offline throughput: `llm2vec encode` of the texts, before the first level and after each one;
  2. the server on 127.0.0.1 (a free port): POST /v1/embeddings with one text per request (base64, as the
     official openai client sends) at each concurrency level; throughput, p50/p99 latency, errors, mean batch
     size (from /metrics), and the ratio to the mean of the offline runs just before and just after the level
     (the machine may be shared: bracketing keeps both sides under the same load);
  3. the latency probe: a fixed text, alternately encoded offline (one `Encoder::encode` call, what `llm2vec
     encode` runs, in the `encode_latency` example) and served at concurrency 1, so both see the same load;
     plus the server's own overhead per request (request time minus inference time, from /metrics);
  4. checks: served embeddings equal `llm2vec encode --normalize` (/v1/embeddings) and `llm2vec encode
     --instruction` (/embed, with an instruction); the official openai client, when a Python with `openai` is
     given (--openai-python); graceful shutdown (SIGTERM with requests in flight: all answered, exit code 0,
     then connections refused).
Prints a table, writes JSON (--json), exits 1 when a check fails (the speed goals are reported, not asserted).
"""

import argparse
import array
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXED_TEXT = "a group of men play soccer on the beach ."
INSTRUCTION = "Retrieve semantically similar text:"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(REPO / "target/release/llm2vec"))
    p.add_argument("--latency-binary", default=str(REPO / "target/release/examples/encode_latency"))
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--texts", default=str(REPO.parent / "shared/data/STSBenchmark/test.jsonl"),
                   help="JSONL with sentence1 fields (STS-B); generated sentences when absent")
    p.add_argument("--requests", type=int, default=300, help="requests per concurrency level (max 2000)")
    p.add_argument("--levels", default="1,8,64")
    p.add_argument("--level-seconds", type=float, default=60.0, help="time limit per level (max 120)")
    p.add_argument("--probe-requests", type=int, default=100, help="fixed-text encodes, offline and served (max 500)")
    p.add_argument("--openai-python", help="a Python with the openai package (e.g. .venv-tools/bin/python)")
    p.add_argument("--json", default=str(REPO / "target/loadtest/results.json"))
    args = p.parse_args()
    args.requests = max(1, min(args.requests, 2000))
    args.probe_requests = max(1, min(args.probe_requests, 500))
    args.level_seconds = max(1.0, min(args.level_seconds, 120.0))
    args.levels = [int(c) for c in args.levels.split(",")]
    return args


def load_texts(path, n):
    """n distinct sentences: STS-B sentence1 in file order, else generated ones of varied length."""
    texts = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                s = json.loads(line)["sentence1"].strip()
                if s and s not in texts:
                    texts.append(s)
                if len(texts) == n:
                    break
    words = "the a man woman dog plays runs on beach guitar slowly red house river quickly".split()
    while len(texts) < n:
        i = len(texts)
        texts.append(" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(5 + i % 20)) + f" {i}")
    return texts


# ---------------------------------------------------------------- offline (the CLI)

def read_npy(path):
    """Rows of a float32 .npy written by `llm2vec encode`."""
    data = Path(path).read_bytes()
    header_len = int.from_bytes(data[8:10], "little")
    header = data[10:10 + header_len].decode()
    assert "'<f4'" in header and "False" in header, header
    rows, dim = map(int, re.search(r"\((\d+), (\d+)\)", header).groups())
    values = array.array("f")
    values.frombytes(data[10 + header_len:])
    return [values[i * dim:(i + 1) * dim] for i in range(rows)]


def offline_encode(args, tmp, name, lines, *extra):
    """Runs `llm2vec encode`; returns (rows, seconds of the encode itself as the CLI reports it)."""
    inp, out = tmp / f"{name}.txt", tmp / f"{name}.npy"
    inp.write_text("\n".join(lines) + "\n")
    cmd = [args.binary, "encode", "--model", args.model, "--input", str(inp), "--output", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = float(re.search(r"in ([0-9.]+)s", done.stderr).group(1))
    return read_npy(out), seconds


# ---------------------------------------------------------------- server

def start_server(args):
    cmd = [args.binary, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0",
           "--max-concurrent-requests", "256"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"server did not start: {line}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
    return proc, int(m.group(1))


def call(conn, method, path, body=None):
    payload = None if body is None else json.dumps(body)
    headers = {} if body is None else {"Content-Type": "application/json"}
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def rows_of(openai_body):
    out = []
    for item in json.loads(openai_body)["data"]:
        row = array.array("f")
        row.frombytes(base64.b64decode(item["embedding"]))
        out.append(row)
    return out


def metrics_text(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    _, body = call(conn, "GET", "/metrics")
    conn.close()
    return body.decode()


def metric(port, name):
    """The value of one series, e.g. `llm2vec_batch_size_sum` or `x_sum{endpoint="/v1/embeddings"}`."""
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", metrics_text(port), re.M)
    return float(m.group(1))


def mean_of(port, histogram, before):
    """Mean of a histogram's observations since `before` (its (sum, count) then); returns it and the new pair."""
    now = (metric(port, histogram + "_sum"), metric(port, histogram + "_count"))
    return (now[0] - before[0]) / max(now[1] - before[1], 1), now


def run_level(port, model, texts, concurrency, deadline_s, collect=None):
    """`concurrency` threads with keep-alive connections send one text per request until every text was sent
    or the deadline passed. Returns (seconds, latencies of successes, errors)."""
    lock = threading.Lock()
    next_index = [0]
    latencies, errors = [], []
    deadline = time.monotonic() + deadline_s

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=deadline_s + 30)
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(texts):
                break
            start = time.perf_counter()
            try:
                status, body = call(conn, "POST", "/v1/embeddings",
                                    {"input": texts[i], "model": model, "encoding_format": "base64"})
            except (OSError, http.client.HTTPException) as e:
                status, body = -1, str(e).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=deadline_s + 30)
            elapsed = time.perf_counter() - start
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                    if collect is not None:
                        collect[i] = rows_of(body)[0]
                else:
                    errors.append((status, body[:200]))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, errors


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] if s else float("nan")


def max_rel_diff(a_rows, b_rows):
    worst = 0.0
    for a, b in zip(a_rows, b_rows):
        scale = max(abs(v) for v in b) or 1e-12
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)) / scale)
    return worst


REQUEST_SERIES = 'llm2vec_request_duration_seconds_{}{{endpoint="/v1/embeddings"}}'
INFERENCE = "llm2vec_inference_duration_seconds"


def latency_probe(args, port):
    """The fixed text, alternately encoded offline and served (concurrency 1): two latency lists, the errors,
    and the server's mean overhead per request in seconds (request time minus inference time)."""
    offline = subprocess.Popen([args.latency_binary, args.model], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert offline.stdout.readline().strip() == "ready"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"input": FIXED_TEXT, "model": args.model, "encoding_format": "base64"}
    local, served, errors = [], [], 0
    deadline = time.monotonic() + args.level_seconds
    for i in range(args.probe_requests + 3):  # the first 3 of each warm up
        if i == 3:
            requests_before = tuple(metric(port, REQUEST_SERIES.format(k)) for k in ("sum", "count"))
            inference_before = (metric(port, INFERENCE + "_sum"), metric(port, INFERENCE + "_count"))
        offline.stdin.write(FIXED_TEXT + "\n")
        offline.stdin.flush()
        seconds = float(offline.stdout.readline())
        start = time.perf_counter()
        status, _ = call(conn, "POST", "/v1/embeddings", body)
        elapsed = time.perf_counter() - start
        errors += status != 200
        if i >= 3:
            local.append(seconds)
            served.append(elapsed)
        if time.monotonic() > deadline:
            break
    conn.close()
    offline.stdin.close()
    offline.wait(timeout=30)
    requests_now = tuple(metric(port, REQUEST_SERIES.format(k)) for k in ("sum", "count"))
    request_mean = (requests_now[0] - requests_before[0]) / max(requests_now[1] - requests_before[1], 1)
    inference_mean, _ = mean_of(port, INFERENCE, inference_before)
    return local, served, errors, request_mean - inference_mean


# ---------------------------------------------------------------- checks

def check_embed_with_instruction(args, tmp, port, texts):
    expected, _ = offline_encode(args, tmp, "instr", texts, "--instruction", INSTRUCTION)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, body = call(conn, "POST", "/embed", {"inputs": texts, "instruction": INSTRUCTION, "normalize": False})
    conn.close()
    assert status == 200, body
    return max_rel_diff([array.array("f", r) for r in json.loads(body)], expected)


OPENAI_SNIPPET = r"""
import json, sys
from openai import OpenAI
port, model, texts = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
default = client.embeddings.create(model=model, input=texts)           # the client's default (base64)
floats = client.embeddings.create(model=model, input=texts, encoding_format="float")
short = client.embeddings.create(model=model, input=texts[0], dimensions=64, user="load-test")
try:
    client.embeddings.create(model=model, input="")
    bad = None
except Exception as e:  # the client raises its own error type for a 422
    bad = type(e).__name__
print(json.dumps({
    "default": [d.embedding for d in default.data], "float": [d.embedding for d in floats.data],
    "short": short.data[0].embedding, "prompt_tokens": default.usage.prompt_tokens, "bad": bad,
}))
"""


def check_openai_client(args, port, texts, reference):
    if not args.openai_python:
        return {"skipped": "no --openai-python"}
    done = subprocess.run([args.openai_python, "-c", OPENAI_SNIPPET, str(port), args.model, json.dumps(texts)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return {"ok": False, "error": done.stderr[-2000:]}
    out = json.loads(done.stdout)
    short_norm = sum(v * v for v in out["short"]) ** 0.5
    result = {
        "default_vs_llm2vec_encode": max_rel_diff(out["default"], reference),
        "float_vs_llm2vec_encode": max_rel_diff(out["float"], reference),
        "dimensions_64": len(out["short"]), "dimensions_64_norm": short_norm,
        "prompt_tokens": out["prompt_tokens"], "empty_input_raises": out["bad"],
    }
    result["ok"] = (result["default_vs_llm2vec_encode"] < 1e-4 and result["float_vs_llm2vec_encode"] < 1e-4
                    and len(out["short"]) == 64 and abs(short_norm - 1) < 1e-4 and out["bad"] is not None)
    return result


def check_graceful_shutdown(proc, port, model, texts):
    """SIGTERM while 8 requests are in flight: all answered 200, exit code 0, then no connection."""
    results = []
    lock = threading.Lock()

    def client(text):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            status, _ = call(conn, "POST", "/v1/embeddings", {"input": [text] * 4, "model": model})
        except (OSError, http.client.HTTPException) as e:
            status = repr(e)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=client, args=(t,)) for t in texts[:8]]
    for t in threads:
        t.start()
    waited = time.monotonic()
    in_flight = 0
    while in_flight < 8 and time.monotonic() - waited < 10:
        in_flight = metric(port, "llm2vec_requests_in_flight")
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    code = proc.wait(timeout=120)
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/health")
        refused = False
    except OSError:
        refused = True
    return {"in_flight_at_sigterm": in_flight, "answered": results, "exit_code": code, "refused_after": refused,
            "ok": results == [200] * 8 and code == 0 and refused}


# ---------------------------------------------------------------- main

def main():
    args = parse_args()
    texts = load_texts(args.texts, args.requests)
    tmp = Path(tempfile.mkdtemp(prefix="llm2vec-loadtest-"))
    report = {"model": args.model, "requests_per_level": len(texts), "texts": args.texts if os.path.isfile(args.texts) else "generated",
              "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}

    print(f"offline: llm2vec encode of {len(texts)} texts ...", file=sys.stderr)
    reference, first = offline_encode(args, tmp, "texts", texts, "--normalize")
    offline_runs = [first]

    proc, port = start_server(args)
    levels = []
    try:
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(3):
            call(warm, "POST", "/v1/embeddings", {"input": FIXED_TEXT, "model": args.model})
        warm.close()
        served = {}
        for c in args.levels:
            print(f"served: concurrency {c}, then offline again ...", file=sys.stderr)
            batch_before = (metric(port, "llm2vec_batch_size_sum"), metric(port, "llm2vec_batch_size_count"))
            seconds, lat, errors = run_level(port, args.model, texts, c, args.level_seconds, served)
            mean_batch, _ = mean_of(port, "llm2vec_batch_size", batch_before)
            offline_runs.append(offline_encode(args, tmp, "texts", texts, "--normalize")[1])
            offline_tps = len(texts) / ((offline_runs[-2] + offline_runs[-1]) / 2)
            levels.append({"concurrency": c, "ok": len(lat), "errors": len(errors), "error_samples": errors[:3],
                           "seconds": seconds, "texts_per_s": len(lat) / seconds,
                           "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
                           "mean_batch": mean_batch, "offline_texts_per_s": offline_tps,
                           "ratio_to_offline": len(lat) / seconds / offline_tps})
        print("latency probe (fixed text, offline and served alternately) ...", file=sys.stderr)
        probe_offline, probe, probe_errors, overhead = latency_probe(args, port)
        order = sorted(served)
        report["check_v1_vs_encode"] = max_rel_diff([served[i] for i in order], [reference[i] for i in order])
        report["check_embed_instruction_vs_encode"] = check_embed_with_instruction(args, tmp, port, texts[:8])
        report["openai_client"] = check_openai_client(args, port, texts[:4], reference[:4])
        report["graceful_shutdown"] = check_graceful_shutdown(proc, port, args.model, texts)
    finally:
        if proc.poll() is None:
            proc.kill()

    report.update({
        "offline_runs_s": offline_runs,
        "levels": levels,
        "probe": {"requests": len(probe), "errors": probe_errors,
                  "offline_p50_ms": percentile(probe_offline, 50) * 1e3, "offline_p99_ms": percentile(probe_offline, 99) * 1e3,
                  "served_p50_ms": percentile(probe, 50) * 1e3, "served_p99_ms": percentile(probe, 99) * 1e3,
                  "p99_over_offline_p99": percentile(probe, 99) / percentile(probe_offline, 99),
                  "p99_over_offline_p50": percentile(probe, 99) / percentile(probe_offline, 50),
                  "server_overhead_ms": overhead * 1e3},
    })
    report["machine"]["loadavg_end"] = os.getloadavg()
    print_report(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    failed = (report["check_v1_vs_encode"] >= 1e-4 or report["check_embed_instruction_vs_encode"] >= 1e-4
              or not report["graceful_shutdown"]["ok"] or report["openai_client"].get("ok") is False
              or any(level["errors"] for level in levels) or probe_errors)
    sys.exit(1 if failed else 0)


def print_report(r):
    print(f"\nmodel {r['model']}, {r['requests_per_level']} requests per level (one text each), texts: {r['texts']}")
    print(f"machine: {r['machine']['cpus']} CPUs, load average {r['machine']['loadavg_start'][0]:.2f} at start, "
          f"{r['machine']['loadavg_end'][0]:.2f} at end")
    runs = ", ".join(f"{s:.2f}s" for s in r["offline_runs_s"])
    print(f"offline llm2vec encode of the same texts, before the first level and after each: {runs}\n")
    print("| concurrency | texts/s | p50 ms | p99 ms | errors | mean batch | offline texts/s | served / offline |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for l in r["levels"]:
        print(f"| {l['concurrency']} | {l['texts_per_s']:.1f} | {l['p50_ms']:.0f} | {l['p99_ms']:.0f} | {l['errors']} | "
              f"{l['mean_batch']:.1f} | {l['offline_texts_per_s']:.1f} | {l['ratio_to_offline']:.2f} |")
    p = r["probe"]
    print(f"\nlatency probe (fixed text, {p['requests']} offline encodes alternating with {p['requests']} served requests "
          f"at concurrency 1): offline p50 {p['offline_p50_ms']:.1f} ms, p99 {p['offline_p99_ms']:.1f} ms; "
          f"served p50 {p['served_p50_ms']:.1f} ms, p99 {p['served_p99_ms']:.1f} ms ({p['errors']} errors); "
          f"server overhead (request minus inference time) {p['server_overhead_ms']:.2f} ms per request")
    top = max(r["levels"], key=lambda l: l["concurrency"])
    print(f"goals: served/offline at concurrency {top['concurrency']} >= 0.90: {top['ratio_to_offline']:.2f}; "
          f"served p99 at concurrency 1 <= 1.2 x offline: {p['p99_over_offline_p99']:.2f} x offline p99, "
          f"{p['p99_over_offline_p50']:.2f} x offline p50; "
          f"errors: {sum(l['errors'] for l in r['levels']) + p['errors']}")
    print(f"checks: /v1/embeddings vs llm2vec encode --normalize: max rel diff {r['check_v1_vs_encode']:.2e}; "
          f"/embed with instruction vs llm2vec encode --instruction: {r['check_embed_instruction_vs_encode']:.2e}")
    print(f"openai client: {json.dumps(r['openai_client'])}")
    print(f"graceful shutdown: {json.dumps(r['graceful_shutdown'])}")


if __name__ == "__main__":
    main()
