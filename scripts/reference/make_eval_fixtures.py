#!/usr/bin/env python3
"""Expected values for llm2vec-eval's metric parity tests, computed by the Python references MTEB uses.

Writes crates/llm2vec-eval/tests/fixtures/eval_reference.json with:
  - numpy RandomState draws (MT19937, randint, shuffle, permutation, weighted choice);
  - scipy pearsonr / spearmanr, sklearn average_precision_score, v_measure_score, accuracy_score,
    f1_score (macro, weighted) on fixed inputs (with ties);
  - best accuracy / F1 thresholds, found by brute force over the midpoints with sklearn's scores;
  - pytrec_eval ndcg_cut, map_cut, recall, P and recip_rank (on runs cut at k) on a fixed run;
  - sklearn LogisticRegression (MTEB's settings) and MiniBatchKMeans (MTEB's settings, global numpy
    generator seeded with 42 as MTEB does) on synthetic data that the Rust test regenerates from the
    same RandomState draws, so only the expected outputs are stored.

Run with the reference venv: .venv-ref/bin/python scripts/reference/make_eval_fixtures.py
(needs numpy, scipy, scikit-learn, pytrec_eval-terrier).
"""

import json
import platform
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytrec_eval
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.cluster import MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    v_measure_score,
)

OUT = Path(__file__).resolve().parents[2] / "crates/llm2vec-eval/tests/fixtures/eval_reference.json"
K_VALUES = [1, 3, 5, 10, 20, 100, 1000]


def rng_section():
    rs = np.random.RandomState(42)
    samples = rs.random_sample(3).tolist()
    randint = np.random.RandomState(7).randint(0, 1112, 20).tolist()
    perm = np.random.RandomState(3).permutation(25).tolist()
    shuffled = np.arange(30)
    np.random.RandomState(42).shuffle(shuffled)
    w = np.ones(1112, dtype=np.float32)
    choice = np.random.RandomState(42).choice(1112, 12, p=w / w.sum()).tolist()
    return {
        "random_sample_seed42": samples,
        "randint_seed7_0_1112_x20": randint,
        "permutation_seed3_25": perm,
        "shuffle_seed42_arange30": shuffled.tolist(),
        "choice_seed42_1112_x12_uniform_p": choice,
    }


def correlation_cases():
    rs = np.random.RandomState(0)
    cases = []
    for n, ties in [(10, False), (50, True), (200, True)]:
        gold = rs.random_sample(n) * 5
        pred = gold + rs.random_sample(n) * 2 - 1
        if ties:
            gold = np.round(gold * 2) / 2  # gold scores on a 0.5 grid, many ties
            pred = np.round(pred, 1)
        cases.append({
            "x": gold.tolist(),
            "y": pred.tolist(),
            "pearson": float(pearsonr(gold, pred)[0]),
            "spearman": float(spearmanr(gold, pred)[0]),
        })
    return cases


def ap_cases():
    rs = np.random.RandomState(1)
    cases = []
    for n, decimals in [(12, None), (100, 1), (300, 2)]:
        labels = (rs.random_sample(n) < 0.35).astype(int)
        scores = rs.random_sample(n) + 0.4 * labels
        if decimals is not None:
            scores = np.round(scores, decimals)
        cases.append({"labels": labels.tolist(), "scores": scores.tolist(),
                      "ap": float(average_precision_score(labels, scores))})
    return cases


def label_cases():
    rs = np.random.RandomState(2)
    cases = []
    for n, k_true, k_pred in [(20, 3, 3), (150, 5, 4), (400, 7, 9)]:
        truth = rs.randint(0, k_true, n)
        pred = np.where(rs.random_sample(n) < 0.6, truth % k_pred, rs.randint(0, k_pred, n))
        cases.append({
            "truth": truth.tolist(),
            "pred": pred.tolist(),
            "v_measure": float(v_measure_score(truth, pred)),
            "accuracy": float(accuracy_score(truth, pred)),
            "f1_macro": float(f1_score(truth, pred, average="macro")),
            "f1_weighted": float(f1_score(truth, pred, average="weighted")),
        })
    return cases


def best_threshold(scores, labels, higher_is_similar):
    """Brute force: every midpoint between neighbours in score order, first strict maximum wins."""
    order = np.argsort(-scores if higher_is_similar else scores, kind="stable")
    s = scores[order]
    best_acc, acc_thr = 0.0, -1.0
    best_f1, best_p, best_r, f1_thr = 0.0, 0.0, 0.0, 0.0
    for i in range(len(s) - 1):
        thr = (s[i] + s[i + 1]) / 2
        pred = (scores > thr) if higher_is_similar else (scores < thr)
        acc = accuracy_score(labels, pred)
        if acc > best_acc:
            best_acc, acc_thr = acc, thr
        if pred.sum() > 0 and (labels[pred]).sum() > 0:
            f1 = f1_score(labels, pred)
            if f1 > best_f1:
                best_f1, f1_thr = f1, thr
                best_p, best_r = precision_score(labels, pred), recall_score(labels, pred)
    return {"accuracy": best_acc, "accuracy_threshold": float(acc_thr), "f1": best_f1,
            "f1_threshold": float(f1_thr), "precision": best_p, "recall": best_r}


def threshold_cases():
    rs = np.random.RandomState(3)
    cases = []
    for n, higher in [(40, True), (120, False)]:
        labels = (rs.random_sample(n) < 0.4).astype(int)
        scores = rs.random_sample(n) + (0.5 if higher else -0.5) * labels  # distinct values
        case = {"scores": scores.tolist(), "labels": labels.tolist(), "higher_is_similar": higher}
        case.update(best_threshold(scores, labels, higher))
        signed = scores if higher else -scores
        case["ap"] = float(average_precision_score(labels, signed))
        cases.append(case)
    return cases


def trec_case():
    rs = np.random.RandomState(4)
    docs = [f"d{i:03d}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(8):
        qid = f"q{q}"
        judged = rs.choice(60, 6, replace=False)
        qrels[qid] = {docs[j]: int(rs.randint(0, 3)) for j in judged}
        run[qid] = {}
        for j in rs.choice(60, 40, replace=False):
            # scores on a coarse grid so that ties (broken by doc id) occur; judged documents score higher
            bonus = 0.4 * qrels[qid].get(docs[j], 0)
            run[qid][docs[j]] = float(np.round(rs.random_sample() + bonus, 1))
    qrels["q0"]["unknown-doc"] = 1  # a judgement naming a document nobody retrieved
    qrels["q1"] = {docs[0]: 0, docs[1]: 0}  # judged, nothing relevant
    run["q9"] = {docs[0]: 1.0}  # a query without judgements: ignored
    measures = {"ndcg_cut." + ",".join(map(str, K_VALUES)), "map_cut." + ",".join(map(str, K_VALUES)),
                "recall." + ",".join(map(str, K_VALUES)), "P." + ",".join(map(str, K_VALUES))}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    expected = {}
    for name, key in [("ndcg", "ndcg_cut"), ("map", "map_cut"), ("recall", "recall"), ("precision", "P")]:
        expected[name] = [float(np.mean([per_query[q][f"{key}_{k}"] for q in per_query])) for k in K_VALUES]
    mrr = []
    for k in K_VALUES:
        cut = {}
        for q, d in run.items():
            ranked = sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]  # trec_eval's order
            cut[q] = dict(ranked)
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        mrr.append(float(np.mean([rr[q]["recip_rank"] for q in rr])))
    expected["mrr"] = mrr
    expected["queries"] = len(per_query)
    return {"qrels": qrels, "run": run, "k_values": K_VALUES, "expected": expected}


def synthetic(seed, n, d, k, spread, outliers=False):
    """Blobs from RandomState draws only (the Rust test makes the same data): labels, centers, noise.
    With `outliers`, the first two dimensions are scaled by 50 and everything is shifted by 5, like the
    few huge dimensions of LLM hidden states; lbfgs then stops at max_iter, as it does on real embeddings."""
    rs = np.random.RandomState(seed)
    labels = rs.randint(0, k, n)
    centers = rs.random_sample((k, d)) * spread
    x = centers[labels] + rs.random_sample((n, d)) - 0.5
    if outliers:
        x[:, :2] *= 50
        x += 5
    return x.astype(np.float32), labels


def mteb_undersample(labels, samples_per_label, experiments, seed):
    """MTEB 1.x: the same index array shuffled in place, numpy's global generator re-seeded each time."""
    idxs = np.arange(len(labels))
    out = []
    for _ in range(experiments):
        np.random.seed(seed)
        np.random.shuffle(idxs)
        count, taken = {}, []
        for i in idxs:
            if count.get(labels[i], 0) < samples_per_label:
                taken.append(int(i))
                count[labels[i]] = count.get(labels[i], 0) + 1
        out.append(taken)
    return out


def logreg_cases():
    cases = []
    for name, seed, n_train, n_test, d, k, spread in [
        ("binary", 11, 200, 300, 64, 2, 0.3),
        ("multiclass", 12, 300, 300, 64, 5, 0.4),
    ]:
        x, y = synthetic(seed, n_train + n_test, d, k, spread, outliers=True)
        clf = LogisticRegression(random_state=42, max_iter=100).fit(x[:n_train], y[:n_train])
        pred = clf.predict(x[n_train:])
        cases.append({"name": name, "seed": seed, "n_train": n_train, "n_test": n_test, "dim": d, "classes": k,
                      "spread": spread, "predictions": pred.tolist(),
                      "outliers": True, "accuracy": float(accuracy_score(y[n_train:], pred)),
                      "n_iter": int(clf.n_iter_[0])})
    return cases


def undersampled_case():
    """MTEB's classification protocol end to end: 10 experiments, 8 samples per label, logistic regression."""
    seed, n_train, n_test, d, k, spread = 13, 1500, 600, 48, 12, 0.5
    x, y = synthetic(seed, n_train + n_test, d, k, spread, outliers=True)
    samples = mteb_undersample(y[:n_train], 8, 10, 42)
    accuracies = []
    for rows in samples:
        clf = LogisticRegression(random_state=42, max_iter=100).fit(x[rows], y[rows])
        accuracies.append(float(accuracy_score(y[n_train:], clf.predict(x[n_train:]))))
    return {"seed": seed, "n_train": n_train, "n_test": n_test, "dim": d, "classes": k, "spread": spread,
            "outliers": True, "samples_per_label": 8, "experiments": 10, "first_experiment_rows": samples[0],
            "last_experiment_rows": samples[-1], "accuracies": accuracies, "accuracy": float(np.mean(accuracies))}


def kmeans_cases():
    cases = []
    for seed, n, d, k, spread in [(21, 1112, 16, 5, 0.5), (22, 2000, 8, 7, 0.6)]:
        x, y = synthetic(seed, n, d, k, spread)
        np.random.seed(42)  # MTEB seeds numpy's global generator; MiniBatchKMeans(random_state=None) uses it
        km = MiniBatchKMeans(n_clusters=k, batch_size=500, n_init="auto").fit(x)
        cases.append({"seed": seed, "n": n, "dim": d, "classes": k, "spread": spread, "outliers": False,
                      "labels": km.labels_.tolist(), "n_steps": int(km.n_steps_),
                      "v_measure": float(v_measure_score(y, km.labels_))})
    return cases


def main():
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # lbfgs stops at max_iter, as in MTEB
    fixture = {
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "pytrec_eval": version("pytrec_eval-terrier"),
        },
        "rng": rng_section(),
        "correlation": correlation_cases(),
        "average_precision": ap_cases(),
        "labels": label_cases(),
        "thresholds": threshold_cases(),
        "trec": trec_case(),
        "logreg": logreg_cases(),
        "classification_protocol": undersampled_case(),
        "kmeans": kmeans_cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
