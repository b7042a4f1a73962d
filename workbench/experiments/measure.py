"""A run's figures: read from its finished folder, or as an earlier results file recorded them (run folders
are scratch and may be gone). Figures are {view: record}: one record per view the run's setting fills."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.experiments.grid import Grid, Run
from workbench.experiments.locks import is_done

RETRIEVAL_DIRECTIONS = ("i2t", "t2i")
RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "median_rank")


def eval_path(run: Run, root: Path, split: str) -> Path:
    """Where a run's evaluation on an extra split goes (the name `workbench eval --split` would use)."""
    return run.dir(root) / "model" / f"eval-{run.task}-{split}.json"


def finished(grid: Grid, run: Run, root: Path) -> bool:
    """Trained and tested on every split of its setting."""
    extra = grid.extra_splits(run.setting)
    return is_done(run.dir(root)) and all(eval_path(run, root, split).exists() for split in extra)


def measured(grid: Grid, run: Run, root: Path) -> dict:
    """A finished run's figures ({} while unfinished)."""
    if not finished(grid, run, root):
        return {}
    meta = _read(run.dir(root) / "model" / "workbench.json")
    if grid.layout == "retrieval":
        return {view: retrieval_record(meta) for view in grid.views_of(run.setting)}
    return answer_records(grid, run, root, meta)


def answer_records(grid: Grid, run: Run, root: Path, meta: dict) -> dict:
    """Accuracy overall and per question type on each view's split, minutes (a `dide-pt` run's matching stage
    included), steps; the teacher's fingerprint when the run learned from one; MAD's confidence probe."""
    folder = run.dir(root)
    seconds = meta.get("train_seconds", 0)
    stage1 = folder / "pretrain" / "model" / "workbench.json"
    if stage1.exists():
        seconds += _read(stage1).get("train_seconds", 0)
    in_domain = meta["metrics"]["test"]
    probe_file = folder / "probe.json"  # how good MAD's confidence source was (held-out accuracy of the probe)
    probe = _read(probe_file) if probe_file.exists() else None
    out = {}
    for view, split in grid.views_of(run.setting).items():
        test = in_domain if split == "test" else _read(eval_path(run, root, split))
        record = {
            "accuracy": test["accuracy"],
            "per_type": {q: m["accuracy"] for q, m in test["per_type"].items()},
            "n": test["n"],
            "minutes": round(seconds / 60, 1),
            "steps": meta.get("steps"),
        }
        if "teacher_fingerprint" in meta:
            record["teacher_fingerprint"] = meta["teacher_fingerprint"]
        if split != "test":
            record["in_domain"] = in_domain["accuracy"]
        if probe is not None:
            record["probe"] = probe
        out[view] = record
    return out


def flat_retrieval(metrics: dict) -> dict:
    """{"r1", "i2t R@1", ..., "t2i median_rank"} from a retrieval metrics dict."""
    out = {"r1": metrics["r1"]}
    out.update({f"{d} {k}": metrics[d][k] for d in RETRIEVAL_DIRECTIONS for k in RETRIEVAL_METRICS})
    return out


def retrieval_record(meta: dict) -> dict:
    test = meta["metrics"]["test"]
    return {
        **flat_retrieval(test),
        "params": test["params"],
        "index_s": test["index"]["seconds"],
        "n_images": test["n_images"],
        "query_ms": test.get("query_ms", {}).get("total"),
        "minutes": round(meta.get("train_seconds", 0) / 60, 1),
        "steps": meta.get("steps"),
    }


def recorded(rows: dict, grid: Grid, run: Run) -> dict:
    """The run's figures as a results file recorded them; `rows` is {(task, view): {row: {"runs": ...}}}."""
    out = {}
    for view in grid.views_of(run.setting):
        row = (rows.get((run.task, view)) or {}).get(run.row) or {}
        found = [r for r in row.get("runs", []) if r["seed"] == run.seed]
        if found:
            out[view] = {k: v for k, v in found[0].items() if k != "seed"}
    return out


def fingerprints(grid: Grid, runs, root: Path, assets: Path) -> dict[str, str | None]:
    """{task: fingerprint of the teacher its students learn from now}, each teacher hashed once (grids whose
    `fingerprint` names a path); students of another teacher do not count."""
    from workbench.models.io import weights_fingerprint

    if not grid.fingerprint:
        return {}
    out: dict[str, str | None] = {}
    for run in runs:
        if run.task not in out:
            out[run.task] = weights_fingerprint(Path(run.resolved_paths(root, assets)[grid.fingerprint]))
    return out


def current(figures: dict, fingerprint: str | None) -> dict:
    """`figures` if the run learned from the teacher there now, else {}. Runs from before fingerprints were
    recorded count (they cannot be told apart), as do runs that learned from no teacher."""
    for record in figures.values():
        seen = record.get("teacher_fingerprint")
        if seen is not None and fingerprint is not None and seen != fingerprint:
            return {}
    return figures


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())
