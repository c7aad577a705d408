"""Encoding releases the GIL (other Python threads run meanwhile) and Ctrl-C stops a long encode."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import llm2vec_rs.encoder
from llm2vec_rs import LLM2Vec


def texts(n):
    return [f"the quick brown fox jumps over the lazy dog, line {i}" for i in range(n)]


class Started:
    """A progress callback that records when encoding starts (called once tokenizing is done)."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, done, total):
        if done == 0:
            self.event.set()

    def close(self):
        pass


def test_other_threads_run_while_encoding(tiny_model, monkeypatch):
    started = Started()
    monkeypatch.setattr(llm2vec_rs.encoder, "progress_bar", lambda total: started)
    model = LLM2Vec.from_pretrained(tiny_model)
    finished = {}

    def encode():
        model.encode(texts(3000), batch_size=3000)  # one batch: no callback until the end
        finished["encode"] = time.perf_counter()

    worker = threading.Thread(target=encode)
    worker.start()
    assert started.event.wait(60)
    begun = time.perf_counter()
    sum(i * i for i in range(20000))  # pure Python: needs the GIL
    finished["python"] = time.perf_counter()
    worker.join()
    # Holding the GIL, the encode would have kept this thread waiting until (about) its end.
    remaining = finished["encode"] - begun
    assert remaining > 0.05 and finished["encode"] - finished["python"] > 0.5 * remaining, finished


CHILD = """
import signal, sys
import llm2vec_rs.encoder
from llm2vec_rs import LLM2Vec

# A background job of a non-interactive shell starts with SIGINT ignored; Ctrl-C is what this child tests.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Progress:
    done = 0
    def __call__(self, done, total):
        if done == 0:
            print("started", flush=True)
        self.done = done
    def close(self):
        pass

progress = Progress()
llm2vec_rs.encoder.progress_bar = lambda total: progress
model = LLM2Vec.from_pretrained(sys.argv[1])
try:
    model.encode([f"the quick brown fox jumps over the lazy dog, line {i}" for i in range(20000)], batch_size=1)
    print("finished", flush=True)
except KeyboardInterrupt:
    print(f"interrupted after {progress.done} of 20000", flush=True)
"""


def test_ctrl_c_interrupts_a_long_encode(tiny_model):
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), tiny_model], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        sent = time.perf_counter()
        out, _ = child.communicate(timeout=60)
        assert time.perf_counter() - sent < 5
    finally:
        child.kill()
    assert out.startswith("interrupted after "), out
    assert child.returncode == 0
