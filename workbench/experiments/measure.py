"""A run's figures: read from its finished folder, or as an earlier results file recorded them (run folders
are scratch and may be gone). Figures are {view: record}: one record per view the run's setting fills."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from workbench.experiments.grid import Grid, Run
from workbench.experiments.locks import is_done
from workbench.experiments.recipe import same_recipe
from workbench.train.stages import whole_run_seconds

RETRIEVAL_DIRECTIONS = ("i2t", "t2i")
RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "median_rank")
OTHER_RECIPE = "another"  # the digest of a run folder whose saved config is not the run's as defined now


def eval_path(run: Run, root: Path, split: str) -> Path:
    """Where a run's evaluation on an extra split goes (the name `workbench eval --split` would use)."""
    return split_file(run.dir(root), run.task, split)


def split_file(folder: Path, task: str, split: str) -> Path:
    """A run folder's (or a shipped model folder's) evaluation on an extra split."""
    return Path(folder) / "model" / f"eval-{task}-{split}.json"


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
        figures = {view: retrieval_record(meta) for view in grid.views_of(run.setting)}
    else:
        figures = answer_records(grid, run, run.dir(root), meta)
    # the recipe it was trained to, so a later change of the grid shows in the results file: today's digest if the
    # folder's saved config is the run as the grid defines it now (a folder without one cannot be told apart)
    saved = meta.get("train_config")
    digest = run.recipe_digest if not saved or same_recipe(run, saved, grid.student) else OTHER_RECIPE
    for record in figures.values():
        record["recipe"] = digest
    return figures


def shipped(grid: Grid, run: Run, assets: Path) -> dict:
    """The figures of the shipped model that is this run (`Grid.shipped`: seed 0 of its row, in assets/<name>),
    if it was trained as the run is defined now (`recipe.same_recipe`); else {}. So a table
    keeps the runs `workbench rebuild` re-made for the shipped models even when the grid's folders are gone."""
    if run.seed != 0 or grid.layout == "retrieval" or grid.extra_splits(run.setting):
        return {}
    for name, (task, row) in grid.shipped.items():
        meta_path = Path(assets) / name / "workbench.json"
        if (task, row) != (run.task, run.row) or not meta_path.exists():
            continue
        meta = _read(meta_path)
        if not same_recipe(run, meta.get("train_config") or {}, grid.student):
            continue
        figures = answer_records(grid, run, Path(assets) / name, meta)
        for record in figures.values():
            record.update(recipe=run.recipe_digest, shipped=name)
        return figures
    return {}


def answer_records(grid: Grid, run: Run, folder: Path, meta: dict) -> dict:
    """Accuracy overall and per question type on each view's split, minutes (a `dide-pt` run's matching stage
    included), steps; the teacher's fingerprint when the run learned from one; MAD's confidence probe. `folder`
    holds the run's `model`, its matching stage and probe (a run folder, or a shipped model's folder)."""
    seconds = whole_run_seconds(meta, folder)
    in_domain = meta["metrics"]["test"]
    probe_file = folder / "probe.json"  # how good MAD's confidence source was (held-out accuracy of the probe)
    probe = _read(probe_file) if probe_file.exists() else None
    out = {}
    for view, split in grid.views_of(run.setting).items():
        test = in_domain if split == "test" else _read(split_file(folder, run.task, split))
        record = {
            "accuracy": test["accuracy"],
            "per_type": {q: m["accuracy"] for q, m in test["per_type"].items()},
            "n": test["n"],
            "minutes": round(seconds / 60, 1),
            "steps": meta.get("steps"),
        }
        record.update(recorded_fingerprints(meta))
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
        **recorded_fingerprints(meta),
    }


def recorded_fingerprints(meta: dict) -> dict:
    """The fingerprints a run's metadata keeps of the teachers it learned from (`teacher_fingerprint`: the
    student's teacher; `teacher_fingerprints`: the method's named teachers), as its record keeps them."""
    return {k: meta[k] for k in ("teacher_fingerprint", "teacher_fingerprints") if k in meta}


def all_recorded(rows: dict, grid: Grid, run: Run) -> list[dict]:
    """Every figures the file recorded for the run, in its order (the DiDE file keeps a run's current record and
    its record of an earlier teacher or recipe), without the reason an earlier one was set apart."""
    out: list[dict] = []
    for view in grid.views_of(run.setting):
        row = (rows.get((run.task, view)) or {}).get(run.row) or {}
        found = [r for r in row.get("runs", []) if r["seed"] == run.seed]
        for i, record in enumerate(found):
            if i == len(out):
                out.append({})
            out[i][view] = {k: v for k, v in record.items() if k not in ("seed", "why")}
    return out


def merge_records(*groups: dict) -> dict:
    """Several {(task, view): {row: {"runs"}}} groups as one, each row's runs in the groups' order (a results
    file's current runs before its earlier ones, so a run's current record comes first)."""
    out: dict = {}
    for group in groups:
        for key, rows in group.items():
            for name, row in rows.items():
                out.setdefault(key, {}).setdefault(name, {"runs": []})["runs"].extend(row["runs"])
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


def method_fingerprints_now(
    grid: Grid, runs, root: Path, assets: Path, recorded: dict | None = None
) -> dict[str, dict[str, str]]:
    """{task: {field: fingerprint}} of the method teachers the grid checks (`Grid.checked_teachers`) as they are
    now, each folder hashed once. A folder that is not there (not built yet, or the grid's run folder is gone:
    MCAD's teachers live in it) counts as the one fingerprint the file's current records (`recorded`, from
    `current_rows`) carry of it, if they agree on one, so earlier records stay earlier on a fresh clone."""
    from workbench.models.io import weights_fingerprint

    out: dict[str, dict[str, str]] = {}
    hashed: dict[str, str | None] = {}
    for run in runs:
        if recorded and run.task not in out:  # once a task: what its current records agree on
            out[run.task] = _recorded_prints(recorded, grid, run.task)
        paths = run.resolved_paths(root, assets)
        for key in grid.checked_teachers:
            if key not in paths:  # a grid derived from this one without that teacher (e.g. on a real dataset)
                continue
            path = str(paths[key])
            if path not in hashed:
                hashed[path] = weights_fingerprint(Path(path))
            if hashed[path]:
                out.setdefault(run.task, {})[key] = hashed[path]
    return out


def _recorded_prints(rows: dict, grid: Grid, task: str) -> dict[str, str]:
    """{field: fingerprint} the current records of `task` agree on (one value each)."""
    seen: dict[str, set] = {}
    for (row_task, _view), named in rows.items():
        for row in named.values() if row_task == task else ():
            for record in row.get("runs", []):
                for key, fp in record.get("teacher_fingerprints", {}).items():
                    seen.setdefault(key, set()).add(fp)
    return {key: next(iter(fps)) for key, fps in seen.items() if len(fps) == 1 and key in grid.checked_teachers}


def current_rows(layout, grid: Grid, previous: dict | None) -> dict:
    """The results file's current rows only, as `rows_of` gives them (every `earlier` part left out)."""

    def drop(doc):
        return {k: drop(v) for k, v in doc.items() if k != "earlier"} if isinstance(doc, dict) else doc

    return layout.rows_of(grid, drop(previous)) if previous else {}


def current(grid: Grid, run: Run, figures: dict, fingerprint: str | None, method_prints: dict | None = None) -> dict:
    """`figures` if they are of the run as the grid defines it now (`why_earlier` finds nothing), else {}."""
    return {} if why_earlier(grid, run, figures, fingerprint, method_prints) else figures


# what a results table calls each teacher a run learned from
TEACHER_LABELS = {"pretrain_teacher": "matching teacher"}  # the others: the field's words


class Rebuilt(NamedTuple):
    teacher: str  # the field: "teacher" (the student's), or a method teacher's ("fusion_teacher", ...)
    seen: str  # the fingerprint the run recorded of it

    def __str__(self) -> str:
        label = TEACHER_LABELS.get(self.teacher, self.teacher.replace("_", " "))
        return f"{label} {self.seen}, since rebuilt"


def rebuilt_teacher(record: dict, fingerprint: str | None, method_prints: dict | None = None) -> Rebuilt | None:
    """Which teacher the run learned from was rebuilt since: the student's teacher (`fingerprint`: as it is now)
    or a method teacher the grid checks (`method_prints`: {field: fingerprint now}); None when each matches or
    was not recorded (runs that learned from no teacher, or from before fingerprints were recorded, pass)."""
    seen = record.get("teacher_fingerprint")
    if seen is not None and fingerprint is not None and seen != fingerprint:
        return Rebuilt("teacher", seen)
    for key, now in (method_prints or {}).items():
        seen = record.get("teacher_fingerprints", {}).get(key)
        if seen is not None and seen != now:
            return Rebuilt(key, seen)
    return None


def why_earlier(
    grid: Grid, run: Run, figures: dict, fingerprint: str | None, method_prints: dict | None = None
) -> str | None:
    """Why recorded figures are not of the run as it is defined now, or None: a teacher it learned from was
    rebuilt since (`rebuilt_teacher`), or its row's recipe changed (a recipe digest that differs; a record
    without one, when the grid says such records predate a change: `Grid.undigested_earlier`)."""
    for record in figures.values():
        if rebuilt := rebuilt_teacher(record, fingerprint, method_prints):
            return str(rebuilt)
        recipe = record.get("recipe")
        if recipe is None and grid.undigested_earlier:
            return grid.undigested_earlier
        if recipe is not None and recipe != run.recipe_digest:
            return f"an earlier recipe ({recipe})"
    return None


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# the line a results table puts above its earlier rows
EARLIER_NOTE = "*earlier recipe, data or teacher: for reference only, no claim rests on these*"


def whys(row: dict) -> str:
    """Why a row's runs are earlier ones, each reason once (for a table's earlier section)."""
    return "; ".join(dict.fromkeys(r.get("why", "earlier") for r in row["runs"]))
