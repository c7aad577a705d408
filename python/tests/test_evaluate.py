"""`llm2vec_rs.evaluate`: the `llm2vec eval` protocol from Python, on the tiny model and the shared STS-B data."""

import json
import subprocess

import pytest

import llm2vec_rs
from conftest import REPO, SHARED_DATA


def test_evaluate_matches_the_cli(tiny_model, tmp_path):
    scores = llm2vec_rs.evaluate(tiny_model, ["STSBenchmark"], str(SHARED_DATA), str(tmp_path / "py"),
                                 cache_dir=str(tmp_path / "cache"))
    assert list(scores) == ["STSBenchmark"]
    written = json.loads((tmp_path / "py" / "STSBenchmark.json").read_text())
    assert written["scores"]["test"][0]["main_score"] == scores["STSBenchmark"]
    subprocess.run([str(REPO / "target" / "release" / "llm2vec"), "eval", "--model", tiny_model,
                    "--tasks", "STSBenchmark", "--data-dir", str(SHARED_DATA), "--output", str(tmp_path / "cli"),
                    "--no-cache"], check=True, capture_output=True)
    cli = json.loads((tmp_path / "cli" / "STSBenchmark.json").read_text())
    assert cli["scores"] == written["scores"]


def test_evaluate_unknown_task_is_a_value_error(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="unknown task `NoSuchTask`"):
        llm2vec_rs.evaluate(tiny_model, ["NoSuchTask"], str(SHARED_DATA), str(tmp_path))
