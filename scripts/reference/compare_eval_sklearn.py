#!/usr/bin/env python3
"""sklearn on the same embeddings and seeds as llm2vec-eval: Banking77Classification (MTEB's protocol:
10 experiments of 8 samples per label, LogisticRegression(max_iter=100)) and BBCNewsClusteringS2S
(MiniBatchKMeans(batch_size=500, n_init="auto") with numpy's global generator seeded 42 per set).

Input: the folder written by `cargo run --release -p llm2vec-eval --example sklearn_parity` (results/ and
the .npy embeddings) and the data folder. Prints both sides and the differences in points; exits 1 when
a task's main score differs by 0.5 points or more.

.venv-ref/bin/python scripts/reference/compare_eval_sklearn.py OUT_DIR ../shared/data
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, v_measure_score

from make_eval_fixtures import mteb_undersample


def jsonl(path, field):
    return [json.loads(line)[field] for line in path.read_text().splitlines() if line.strip()]


def scores(out, task):
    result = json.loads((out / "results" / f"{task}.json").read_text())
    return result["scores"]["test"][0]


def banking77(out, data):
    task = data / "Banking77Classification"
    y_train = jsonl(task / "train.jsonl", "label")
    y_test = jsonl(task / "test.jsonl", "label")
    rows = json.loads((out / "banking77_train_rows.json").read_text())
    x_rows = np.load(out / "banking77_train.npy")
    x_test = np.load(out / "banking77_test.npy")
    at = {r: i for i, r in enumerate(rows)}
    ours = scores(out, "Banking77Classification")
    print("Banking77Classification (accuracy, 10 experiments)")
    theirs = []
    for e, sample in enumerate(mteb_undersample(y_train, 8, 10, 42)):
        x = x_rows[[at[r] for r in sample]]
        y = [y_train[r] for r in sample]
        clf = LogisticRegression(random_state=42, max_iter=100).fit(x, y)
        pred = clf.predict(x_test)
        acc, f1 = accuracy_score(y_test, pred), f1_score(y_test, pred, average="macro")
        mine = ours["scores_per_experiment"][e]
        theirs.append(acc)
        print(f"  experiment {e}: ours {mine['accuracy']:.4f}  sklearn {acc:.4f}  diff {(mine['accuracy'] - acc) * 100:+.2f} points"
              f"  (f1 {mine['f1']:.4f} vs {f1:.4f})")
    diff = (ours["accuracy"] - np.mean(theirs)) * 100
    print(f"  mean: ours {ours['accuracy']:.4f}  sklearn {np.mean(theirs):.4f}  diff {diff:+.2f} points")
    return diff


def bbc(out, data):
    labels = jsonl(data / "BBCNewsClusteringS2S" / "test.jsonl", "labels")
    ours = scores(out, "BBCNewsClusteringS2S")
    print("BBCNewsClusteringS2S (v-measure, 10 sets)")
    theirs = []
    for k, y in enumerate(labels):
        x = np.load(out / f"bbc_s2s_set{k}.npy")
        np.random.seed(42)  # MTEB's evaluator seeds numpy's global generator; random_state=None uses it
        km = MiniBatchKMeans(n_clusters=len(set(y)), batch_size=500, n_init="auto").fit(x)
        v = v_measure_score(y, km.labels_)
        theirs.append(v)
        mine = ours["v_measures"][k]
        print(f"  set {k}: ours {mine:.4f}  sklearn {v:.4f}  diff {(mine - v) * 100:+.2f} points")
    diff = (ours["v_measure"] - np.mean(theirs)) * 100
    print(f"  mean: ours {ours['v_measure']:.4f}  sklearn {np.mean(theirs):.4f}  diff {diff:+.2f} points")
    return diff


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out, data = Path(sys.argv[1]), Path(sys.argv[2])
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # MTEB's max_iter=100 rarely converges
    diffs = {"Banking77Classification": banking77(out, data), "BBCNewsClusteringS2S": bbc(out, data)}
    failed = [t for t, d in diffs.items() if abs(d) >= 0.5]
    print("within 0.5 points of sklearn" if not failed else f"0.5 points or more off sklearn: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
