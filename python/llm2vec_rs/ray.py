"""Embedding beyond one machine with Ray (`pip install "llm2vec-rs[ray]"`; docs/scale-out.md).

- `Embedder`: holds one `LLM2Vec`, loaded once; a Ray actor (`ray.remote(Embedder)`) or the callable class of
  `Dataset.map_batches`. Forward passes are bounded by a token budget; threads come from the actor's CPUs.
- `embed_dataset`: a Ray Dataset of texts (optional instructions and ids) through a pool of Embedders, returned
  as a dataset of (id, embedding) or written as Parquet.
- `embed_corpus` (also `python -m llm2vec_rs.ray IN_DIR OUT_DIR --model M`): a folder of Parquet/JSONL files to
  a folder of embedding Parquet files, one per input file, written atomically and skipped when already complete,
  so an interrupted job resumes where it stopped.
- `LocalCluster`: a cluster of several `ray start` nodes on this machine, for tests and benchmarks.
"""

import argparse
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from . import __version__, set_num_threads
from .encoder import LLM2Vec

METADATA_KEY = b"llm2vec_rs"
INPUT_SUFFIXES = (".parquet", ".jsonl")


class Embedder:
    """One loaded model. `load_options` are `LLM2Vec.from_pretrained`'s (peft_model_name_or_path, pooling_mode,
    max_length, doc_max_length, skip_instruction, enable_bidirectional, dtype, device). A forward pass holds at
    most `token_budget` tokens counting padding (one longer input runs alone). `threads` defaults to the CPUs
    Ray assigned to this actor (the machine's outside Ray); it must be set before the model loads. The column
    names are those `__call__` (for `Dataset.map_batches`) reads; `id_column=None` keeps the text instead."""

    def __init__(
        self,
        model,
        *,
        token_budget=8192,
        normalize=False,
        threads=None,
        text_column="text",
        instruction_column=None,
        id_column="id",
        **load_options,
    ):
        if token_budget < 1:
            raise ValueError(f"token_budget must be at least 1, got {token_budget}")
        set_num_threads(threads or assigned_cpus())
        self.model = LLM2Vec.from_pretrained(model, **load_options)
        self.token_budget = token_budget
        self.normalize = normalize
        self.columns = (text_column, instruction_column, id_column)

    def dim(self):
        """Embedding width."""
        return self.model.dim

    def where(self):
        """(node id, process id) of this actor: for logs, and to find its process."""
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def peak_memory(self):
        """This process's peak resident memory in bytes (Linux's ru_maxrss is in KiB)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def embed(self, texts, instructions=None):
        """`[len(texts), dim]` float32 embeddings, rows in input order."""
        return self.embed_counting(texts, instructions)[0]

    def embed_counting(self, texts, instructions=None):
        """`embed` and the number of tokens run through the model (padding excluded)."""
        pairs = list(zip(instructions or [""] * len(texts), texts))
        counts = self.model.token_counts(pairs)
        out = np.empty((len(pairs), self.model.dim), dtype=np.float32)
        for batch in token_batches(counts, self.token_budget):
            rows = [pairs[i] for i in batch]
            out[batch] = self.model.encode(rows, batch_size=len(rows), show_progress_bar=False, normalize=self.normalize)
        return out, sum(counts)

    def __call__(self, batch):
        """A `pyarrow.Table` batch in, a table of the id (or text) column and `embedding` out."""
        text, instruction, ident = self.columns
        texts = batch.column(text).to_pylist()
        instructions = batch.column(instruction).to_pylist() if instruction else None
        kept = ident or text
        return pa.table({kept: batch.column(kept), "embedding": embedding_array(self.embed(texts, instructions))})


def assigned_cpus():
    """The CPUs Ray assigned to this worker (at least 1); the machine's count outside a Ray worker."""
    context = ray.get_runtime_context() if ray.is_initialized() else None
    if context is not None and context.worker.mode == ray.WORKER_MODE:
        return max(1, int(context.get_assigned_resources().get("CPU", 1)))
    return os.cpu_count() or 1


def token_batches(counts, budget):
    """Groups input indices into forward passes, longest first, each holding at most `budget` tokens with
    padding (rows times the longest row); an input longer than the budget runs alone."""
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    batches = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * counts[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def embedding_array(embeddings):
    """A `[rows, dim]` float32 array as an Arrow fixed-size list column."""
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1])


def pool_size(cpus_per_actor=1, gpus_per_actor=0):
    """How many actors the cluster holds: its GPUs per `gpus_per_actor` when set, else its CPUs."""
    resources = ray.cluster_resources()
    if gpus_per_actor:
        size = int(resources.get("GPU", 0) // gpus_per_actor)
    else:
        size = int(resources.get("CPU", 0) // cpus_per_actor)
    if size < 1:
        raise RuntimeError(f"the Ray cluster ({resources}) has no room for one actor of {cpus_per_actor} CPU(s) and "
                           f"{gpus_per_actor} GPU(s)")
    return size


def embed_dataset(
    dataset,
    model,
    *,
    output=None,
    actors=None,
    cpus_per_actor=1,
    gpus_per_actor=0,
    rows_per_call=256,
    **embedder_options,
):
    """Embeds `dataset` (rows with a text column, optionally instruction and id columns: see `Embedder`) with
    a pool of `actors` Embedders (default: as many as the cluster's CPUs, or GPUs, allow), each given
    `rows_per_call` rows at a time. Returns the dataset of (id, embedding) rows, embeddings as fixed-size
    float32 lists; with `output` (a folder or URI) writes it there as Parquet and returns None."""
    if actors is None:
        actors = pool_size(cpus_per_actor, gpus_per_actor)
    model, embedder_options = resolved(model, embedder_options)
    embedded = dataset.map_batches(
        Embedder,
        fn_constructor_args=(model,),
        fn_constructor_kwargs=embedder_options,
        batch_size=rows_per_call,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
    )
    if output is None:
        return embedded
    embedded.write_parquet(os.fspath(output))
    return None


class Source:
    """One input file: its texts, instructions and ids, checked (errors name the file and the line or row)."""

    def __init__(self, path, text_column, instruction_column, id_column, instruction):
        self.path = path
        read = read_jsonl if path.suffix == ".jsonl" else read_parquet
        self.texts, self.instructions, ids = read(path, text_column, instruction_column, id_column)
        if instruction and self.instructions is None:
            self.instructions = [instruction] * len(self.texts)
        try:
            self.ids = pa.array(ids if ids is not None else range(len(self.texts)))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"{path}: the '{id_column}' values are not all of one type ({e})") from None


def read_jsonl(path, text_column, instruction_column, id_column):
    """Texts, instructions (None when no line has the field) and ids (None when no line has them)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                records.append((line_no, parse_json_line(path, line_no, line)))
    fields = {k for _, r in records for k in r}
    texts = [field_text(path, f"line {n}", r.get(text_column), text_column) for n, r in records]
    instructions = None
    if instruction_column in fields:
        instructions = [field_str(path, f"line {n}", r.get(instruction_column, ""), instruction_column)
                        for n, r in records]
    ids = None
    if id_column in fields:
        ids = [field_id(path, f"line {n}", r.get(id_column), id_column) for n, r in records]
    return texts, instructions, ids


def parse_json_line(path, line_no, line):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {line_no}: not JSON ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: line {line_no}: expected a JSON object, got {type(record).__name__}")
    return record


def read_parquet(path, text_column, instruction_column, id_column):
    """As `read_jsonl`, from a Parquet file's columns."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
    if text_column not in table.column_names:
        raise ValueError(f"{path}: no column '{text_column}' (columns: {', '.join(table.column_names)})")

    def values(column, check):
        if column not in table.column_names:
            return None
        return [check(path, f"row {i + 1}", v, column) for i, v in enumerate(table.column(column).to_pylist())]

    return values(text_column, field_text), values(instruction_column, field_str), values(id_column, field_id)


def field_str(path, where, value, name):
    if not isinstance(value, str):
        raise ValueError(f"{path}: {where}: field '{name}' must be a string, got {value!r:.60}")
    return value


def field_text(path, where, value, name):
    if not field_str(path, where, value, name).strip():
        raise ValueError(f"{path}: {where}: field '{name}' is empty")
    return value


def field_id(path, where, value, name):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{path}: {where}: field '{name}' must be a string or an integer, got {value!r:.60}")
    return value


def input_files(in_dir):
    """The .parquet and .jsonl files under `in_dir`, sorted, with the relative output path of each."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"{in_dir}: not a folder")
    files = sorted(p for p in in_dir.rglob("*") if p.suffix in INPUT_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{in_dir}: no .parquet or .jsonl files")
    outputs = {}
    for path in files:
        name = path.relative_to(in_dir).with_suffix(".parquet")
        if name in outputs:
            raise ValueError(f"{outputs[name]} and {path} would both be written to {name}")
        outputs[name] = path
    return [(path, name) for name, path in outputs.items()]


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(output, settings, digest):
    """Whether `output` was written whole from this input (`digest`) with these settings."""
    try:
        parquet = pq.ParquetFile(output)
    except (OSError, pa.ArrowException):
        return False
    recorded = json.loads((parquet.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}"))
    return (recorded.get("settings") == settings and recorded.get("source_sha256") == digest
            and recorded.get("rows") == parquet.metadata.num_rows)


def write_output(output, source, embeddings, settings, digest):
    """Writes (id, embedding) with the settings in the file's metadata: a temporary file, then a rename."""
    output.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": source.ids, "embedding": embedding_array(embeddings)})
    meta = {"settings": settings, "source": str(source.path), "source_sha256": digest, "rows": len(source.ids)}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise


class FileJob:
    """An input file being embedded: its rows and the embeddings come back so far."""

    def __init__(self, source, output, digest, dim):
        self.source, self.output, self.digest = source, output, digest
        self.embeddings = np.empty((len(source.texts), dim), dtype=np.float32)
        self.done = 0

    def chunks(self, rows):
        """`((job, start), texts, instructions)` per `rows` rows."""
        for start in range(0, len(self.source.texts), rows):
            end = min(start + rows, len(self.source.texts))
            instructions = self.source.instructions[start:end] if self.source.instructions else None
            yield (self, start), self.source.texts[start:end], instructions

    def put(self, start, embeddings):
        """Stores a chunk's rows; true once every row is in."""
        self.embeddings[start:start + len(embeddings)] = embeddings
        self.done += len(embeddings)
        return self.done == len(self.embeddings)


def embed_corpus(
    in_dir,
    out_dir,
    model,
    *,
    address=None,
    redo=False,
    actors=None,
    cpus_per_actor=1,
    gpus_per_actor=0,
    rows_per_task=256,
    token_budget=8192,
    normalize=False,
    text_column="text",
    instruction_column="instruction",
    id_column="id",
    instruction=None,
    log=None,
    **load_options,
):
    """Embeds every .parquet/.jsonl file under `in_dir` (a text column; optional instruction and id columns,
    ids default to row numbers from 0; `instruction` applies to files without one) into `out_dir`, one Parquet
    file (id, embedding) per input at the same relative path. A file whose output is complete (same input
    bytes, same model and settings, every row) is skipped unless `redo`. Runs on the Ray cluster at `address`
    (`ray://...`, `host:port`, `auto`; None: `RAY_ADDRESS`, else a local Ray) with `actors` Embedders (default:
    as many as fit), `rows_per_task` rows per actor call. An actor whose process dies is restarted and its
    calls retried. Returns counts and timings; `log(message)` reports progress."""
    log = log or (lambda message: None)
    model, load_options = resolved(model, load_options)
    settings = {"model": os.fspath(model), "normalize": normalize, "instruction": instruction,
                "version": __version__, **{k: _jsonable(v) for k, v in sorted(load_options.items())}}
    todo, skipped = [], 0
    for path, name in input_files(in_dir):
        output, digest = Path(out_dir) / name, file_digest(path)
        if not redo and is_complete(output, settings, digest):
            log(f"skip {path}: {output} is complete")
            skipped += 1
        else:
            todo.append((path, output, digest))
    summary = {"files": len(todo), "skipped": skipped, "rows": 0, "tokens": 0, "load_s": 0.0, "embed_s": 0.0,
               "actor_peak_bytes": 0}
    if not todo:
        return summary
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, log_to_driver=False)
    try:
        start = time.perf_counter()
        pool = start_actors(model, actors, cpus_per_actor, gpus_per_actor, token_budget, normalize, load_options)
        dim = ray.get([a.dim.remote() for a in pool])[0]
        for i, (node, pid) in enumerate(ray.get([a.where.remote() for a in pool])):
            log(f"embedder {i}: node {node} pid {pid}")
        summary["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        columns = (text_column, instruction_column, id_column, instruction)
        for (job, at), embeddings, tokens in run_chunks(pool, corpus_chunks(todo, settings, dim, rows_per_task,
                                                                              columns, log)):
            summary["rows"] += len(embeddings)
            summary["tokens"] += tokens
            if job.put(at, embeddings):
                write_output(job.output, job.source, job.embeddings, settings, job.digest)
                log(f"wrote {job.output} ({len(job.embeddings)} rows)")
        summary["embed_s"] = time.perf_counter() - start
        summary["actor_peak_bytes"] = max(ray.get([a.peak_memory.remote() for a in pool]))
    finally:
        if started_ray:
            ray.shutdown()
    return summary


def corpus_chunks(todo, settings, dim, rows, columns, log):
    """The chunks of the files to do, each file read when its turn comes; an empty file is written at once."""
    for path, output, digest in todo:
        job = FileJob(Source(path, *columns), output, digest, dim)
        if len(job.embeddings) == 0:
            write_output(output, job.source, job.embeddings, settings, digest)
            log(f"wrote {output} (0 rows)")
        yield from job.chunks(rows)


def start_actors(model, actors, cpus_per_actor, gpus_per_actor, token_budget, normalize, load_options):
    """The pool: Embedders restarted when their process dies, their calls then retried."""
    size = actors or pool_size(cpus_per_actor, gpus_per_actor)
    remote = ray.remote(Embedder).options(
        num_cpus=cpus_per_actor, num_gpus=gpus_per_actor, max_restarts=-1, max_task_retries=-1
    )
    return [remote.remote(model, token_budget=token_budget, normalize=normalize, **load_options) for _ in range(size)]


def run_chunks(pool, chunks, per_actor=2):
    """Runs `(key, texts, instructions)` chunks on the pool, `per_actor` calls in flight per actor, and yields
    `(key, embeddings, tokens)` as they finish. `key` is `(job, start)`, which a failure message names."""
    in_flight = {}

    def submit(actor):
        chunk = next(chunks, None)
        if chunk is not None:
            in_flight[actor.embed_counting.remote(chunk[1], chunk[2])] = (actor, chunk)

    for actor in pool:
        for _ in range(per_actor):
            submit(actor)
    while in_flight:
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        actor, ((job, start), texts, _) = in_flight.pop(ref)
        try:
            embeddings, tokens = ray.get(ref)
        except ray.exceptions.RayError as e:
            raise RuntimeError(f"{job.source.path}: rows {start + 1}-{start + len(texts)}: {e}") from None
        submit(actor)
        yield (job, start), embeddings, tokens


def resolved(model, load_options):
    """The model and adapter paths made absolute when they exist here, as actors on other nodes or in other
    folders see them (a short name or hub id is left as it is)."""

    def absolute(path):
        return os.path.abspath(path) if os.path.exists(path) else os.fspath(path)

    peft = load_options.get("peft_model_name_or_path")
    if peft is not None:
        peft = [absolute(p) for p in ([peft] if isinstance(peft, (str, os.PathLike)) else peft)]
        load_options = {**load_options, "peft_model_name_or_path": peft}
    return absolute(model), load_options


def _jsonable(value):
    return value if value is None or isinstance(value, (str, int, float, bool, list)) else str(value)


class LocalCluster:
    """A Ray cluster of `nodes` nodes on this machine, each a `ray start --block` process (the head first) with
    `cpus` CPUs, no GPU and a small object store; `stop()` (or leaving the `with` block) ends each node's
    process, which stops that node's Ray processes. For tests and benchmarks: several nodes, one machine."""

    def __init__(self, nodes=2, cpus=1, object_store_bytes=200_000_000):
        self.nodes, self.cpus, self.object_store_bytes = nodes, cpus, object_store_bytes
        self.temp_dir = tempfile.mkdtemp(prefix="ray-")
        self.address = f"127.0.0.1:{free_port()}"
        self.processes = []

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout_s=120):
        ray_cli = Path(sys.executable).with_name("ray")
        common = [f"--num-cpus={self.cpus}", "--num-gpus=0", f"--object-store-memory={self.object_store_bytes}",
                  "--disable-usage-stats", "--block"]
        head = ["--head", f"--port={self.address.split(':')[1]}", "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}"]
        for k in range(self.nodes):
            args = head if k == 0 else [f"--address={self.address}"]
            log = open(os.path.join(self.temp_dir, f"node{k}.log"), "w")
            self.processes.append(subprocess.Popen([str(ray_cli), "start", *args, *common], stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
            self.wait_for_nodes(k + 1, timeout_s)

    def wait_for_nodes(self, count, timeout_s):
        """Waits until `count` nodes are alive (asked in a child process, so this one stays out of Ray)."""
        probe = ("import sys, time, ray\n"
                 f"ray.init(address='{self.address}', log_to_driver=False)\n"
                 f"deadline = time.time() + {timeout_s}\n"
                 f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.time() < deadline:\n"
                 "    time.sleep(0.5)\n"
                 f"sys.exit(sum(n['Alive'] for n in ray.nodes()) < {count})\n")
        deadline = time.time() + timeout_s
        while True:
            if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
                return
            if time.time() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError(f"the local Ray cluster did not reach {count} node(s); logs in {self.temp_dir}")
            time.sleep(1)

    def stop(self):
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    args = parse_args(argv)
    load_options = {
        "peft_model_name_or_path": args.adapter or None,
        "pooling_mode": args.pooling,
        "max_length": args.max_length,
        "doc_max_length": args.doc_max_length,
        "dtype": args.dtype,
        "device": args.device,
    }
    if args.causal:
        load_options["enable_bidirectional"] = False
    try:
        summary = corpus_from_args(args, load_options)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rate = summary["tokens"] / summary["embed_s"] if summary["embed_s"] else 0.0
    print(f"{summary['files']} file(s) embedded, {summary['skipped']} skipped as complete; {summary['rows']} rows, "
          f"{summary['tokens']} tokens in {summary['embed_s']:.2f} s ({rate:.0f} tokens/s), actors started and "
          f"loaded in {summary['load_s']:.2f} s; peak memory of an actor {summary['actor_peak_bytes'] / 2**20:.0f} MiB",
          file=sys.stderr)
    return 0


def corpus_from_args(args, load_options):
    return embed_corpus(
        args.in_dir, args.out_dir, args.model, address=args.address, redo=args.redo, actors=args.actors,
        cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, rows_per_task=args.rows_per_task,
        token_budget=args.token_budget, normalize=args.normalize, text_column=args.text_column,
        instruction_column=args.instruction_column, id_column=args.id_column, instruction=args.instruction,
        log=lambda message: print(message, file=sys.stderr, flush=True),
        **{k: v for k, v in load_options.items() if v is not None},
    )


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m llm2vec_rs.ray", description=embed_corpus.__doc__.split(".")[0])
    p.add_argument("in_dir", help="folder of .parquet / .jsonl files (searched recursively)")
    p.add_argument("out_dir", help="folder for the embedding Parquet files (id, embedding)")
    p.add_argument("--model", required=True, help="short name, Hugging Face folder, .gguf file or hub id")
    p.add_argument("--adapter", action="append", help="a PEFT LoRA folder, merged in order (repeatable)")
    p.add_argument("--pooling", help="mean, weighted_mean, eos_token, bos_token, last_token")
    p.add_argument("--max-length", type=int)
    p.add_argument("--doc-max-length", type=int)
    p.add_argument("--causal", action="store_true", help="causal attention instead of bidirectional")
    p.add_argument("--dtype", help="float32 (default), bfloat16, float16 or q8")
    p.add_argument("--device", help="cpu (default) or cuda (give each actor a GPU with --gpus-per-actor 1)")
    p.add_argument("--normalize", action="store_true", help="unit L2 norm rows")
    p.add_argument("--instruction", help="instruction for files without an instruction column")
    p.add_argument("--text-column", default="text")
    p.add_argument("--instruction-column", default="instruction")
    p.add_argument("--id-column", default="id", help="ids (default: row numbers from 0 when absent)")
    p.add_argument("--address", help="Ray address: ray://host:10001, host:6379 or auto (default: RAY_ADDRESS, "
                                     "else a Ray started here)")
    p.add_argument("--actors", type=int, help="default: as many as the cluster's CPUs (or GPUs) hold")
    p.add_argument("--cpus-per-actor", type=float, default=1, help="also the actor's thread count")
    p.add_argument("--gpus-per-actor", type=float, default=0)
    p.add_argument("--rows-per-task", type=int, default=256, help="rows per actor call")
    p.add_argument("--token-budget", type=int, default=8192, help="tokens per forward pass, padding included")
    p.add_argument("--redo", action="store_true", help="embed every file again, even if its output is complete")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
