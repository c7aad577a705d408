#!/usr/bin/env python3
"""Prints a markdown table of main scores (x100) from `llm2vec eval` output folders: a row per task, a column
per folder, then the STS and overall averages (mean over data sets, as MTEB; "-" where a folder lacks a task),
and when folders cover different tasks, the mean over the tasks they all have. Task types come from the
tasks' `task.json` in the data folder ($DATA_DIR, default ../shared/data).

    scripts/eval/scores-table.py NAME=FOLDER [NAME=FOLDER ...]
"""

import json
import os
import sys
from pathlib import Path

data_dir = Path(os.environ.get("DATA_DIR", "../shared/data"))
columns = [arg.split("=", 1) for arg in sys.argv[1:]]
if not columns or any(len(c) != 2 for c in columns):
    sys.exit(__doc__)
results = {}
for name, folder in columns:
    for path in sorted(Path(folder).glob("*.json")):
        r = json.loads(path.read_text())
        split = next(iter(r["scores"]))
        kind = json.loads((data_dir / r["task_name"] / "task.json").read_text())["type"]
        results.setdefault(r["task_name"], {"type": kind})[name] = 100 * r["scores"][split][0]["main_score"]
tasks = list(results)


def cell(v):
    return "-" if v is None else f"{v:.2f}"


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


print("| Task | " + " | ".join(name for name, _ in columns) + " |")
print("|---|" + "---:|" * len(columns))
for task in tasks:
    print(f"| {task} | " + " | ".join(cell(results[task].get(name)) for name, _ in columns) + " |")
common = [t for t in tasks if all(name in results[t] for name, _ in columns)]
rows = [
    ("STS average", [t for t in tasks if results[t]["type"] == "STS"]),
    ("Overall (mean over data sets)", tasks),
]
if len(common) < len(tasks):
    rows.append((f"Mean over the {len(common)} tasks every column has", common))
for label, chosen in rows:
    cells = [cell(mean(results[t].get(name) for t in chosen)) if all(name in results[t] for t in chosen) else "-" for name, _ in columns]
    print(f"| **{label}** | " + " | ".join(cells) + " |")
