"""Small helpers the teaching notebooks share, so no notebook cell re-implements library code.

A notebook trains a few short runs side by side (`workbench.methods.distill` into temporary folders) and
then compares them: their logged records (`read_metrics`), their training curves in one figure
(`compare_curves`) and their test accuracy overall and per question type (`accuracy_table`). The
notebook tests shrink every run through environment variables (`setting`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import plotly.graph_objects as go

from workbench.viz import training_curves


def setting(name: str, default: int) -> int:
    """An integer notebook setting from the environment: the notebook tests set `WORKBENCH_NOTEBOOK_STEPS`
    (and `_N`) small so every notebook runs in seconds; a reader gets `default`."""
    return int(os.environ.get(name, default))


def read_metrics(run: str | Path, key: str | None = None) -> list[dict]:
    """The records of a run folder's `metrics.jsonl`, in order; with `key`, only those that log it (e.g.
    "t2i": the training-loss records of a DiDE run carry each loss term)."""
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return records if key is None else [r for r in records if key in r]


def compare_curves(runs: dict[str, str | Path], baseline: str | None = None, title: str = "") -> go.Figure:
    """Training loss and validation accuracy of several runs in one figure (`viz.training_curves`), each
    trace named `<run>: <curve>`; the `baseline` run's traces are dotted. The losses of different methods
    are not on one scale (cross-entropy vs. a sum of distillation terms): compare their shapes."""
    fig = go.Figure(layout=training_curves([]).layout)  # one run's axes: loss on the left, accuracy on the right
    for name, folder in runs.items():
        for trace in training_curves(read_metrics(folder)).data:
            trace.update(name=f"{name}: {trace.name}")
            if name == baseline:
                trace.update(line_dash="dot")
            fig.add_trace(trace)
    return fig.update_layout(title=title)


def accuracy_table(results: dict[str, dict], split: str = "test") -> str:
    """Plain text: accuracy (%) of each run overall and per question type, a column per run, with the
    number of examples. `results` maps a column name to what a run returned ({"test": {"accuracy",
    "n", "per_type": {qtype: {"accuracy", "n"}}}}, as `methods.distill`, `train.train` and
    `evaluate.evaluate` give); the question types are the first column's."""
    names = list(results)
    first = results[names[0]][split]
    lines = [f"{'':<12}" + "".join(f"{name:>10}" for name in names) + f"{'n':>7}"]
    lines.append(
        f"{'overall':<12}" + "".join(f"{100 * results[c][split]['accuracy']:9.1f}%" for c in names) + f"{first['n']:7d}"
    )
    for qtype, m in first["per_type"].items():
        accs = [results[c][split]["per_type"][qtype]["accuracy"] for c in names]
        lines.append(f"{qtype:<12}" + "".join(f"{100 * a:9.1f}%" for a in accs) + f"{m['n']:7d}")
    return "\n".join(lines)
