"""Gathering a grid's runs into its results file: each row's seeds, runs, mean and sample std per metric (and
per question type), the row against the grid's baseline row (Welch), then the layout's document and checks."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from workbench.experiments.grid import Grid, as_grid
from workbench.experiments.measure import (
    all_recorded,
    current_rows,
    fingerprints,
    measured,
    method_fingerprints_now,
    shipped,
    why_earlier,
)
from workbench.experiments.stats import summary, versus

LAYOUTS = {
    "tasks": "workbench.experiments.layout_tasks",
    "views": "workbench.experiments.layout_views",
    "retrieval": "workbench.experiments.layout_retrieval",
}


def layout(grid: Grid):
    """The module that shapes `grid`'s results file and table (`rows_of`, `document`, `table`)."""
    return importlib.import_module(LAYOUTS[grid.layout])


def collect(
    grid: Grid | str, root: Path, assets: Path, previous: dict | None = None, paths: dict | None = None
) -> dict:
    """The grid's results document (the file `results_path` names), from its finished runs.

    A run whose folder is gone keeps the figures `previous` (the last results document) recorded for it, so
    the table grows across sessions and machines; a run folder present now wins, then the shipped model that
    is the run (`measure.shipped`), then the record. Figures of an earlier teacher
    or recipe of the run (`measure.why_earlier`) count for nothing and go to the `earlier` groups, which a
    layout may keep apart for reference (the DiDE table does) until the run is trained again."""
    grid = as_grid(grid)
    root, assets = Path(root), Path(assets)
    runs = grid.runs(paths)
    before = layout(grid).rows_of(grid, previous) if previous else {}
    prints = fingerprints(grid, runs, root, assets)
    method_prints = method_fingerprints_now(grid, runs, root, assets, current_rows(layout(grid), grid, previous))
    groups: dict = {}  # (task, view) -> {row: {"seeds", "runs", ...}}, in run order
    earlier: dict = {}  # the same, of figures that are not of the run as defined now (each run says why)
    for run in runs:
        fingerprint = prints.get(run.task)
        found = (measured(grid, run, root), shipped(grid, run, assets), *all_recorded(before, grid, run))
        mark_shipped_copy(run, root, assets, *found[:2])
        candidates = [(f, why_earlier(grid, run, f, fingerprint, method_prints.get(run.task))) for f in found if f]
        now = [f for f, why in candidates if not why]
        if now:
            _add(groups, run, now[0])
        old = [(f, why) for f, why in candidates if why]
        if old:  # kept beside a current one: the earlier rows stay whole
            figures, why = old[0]
            _add(earlier, run, {view: {**record, "why": why} for view, record in figures.items()})
    for rows in (*groups.values(), *earlier.values()):
        summarise(grid, rows)
    return layout(grid).document(grid, groups, root, assets, previous or {}, prints, earlier=earlier)


def mark_shipped_copy(run, root: Path, assets: Path, in_folder: dict, as_shipped: dict) -> None:
    """Adds `shipped` to the run folder's records (`in_folder`, in place) when its model is the shipped one (the
    same weights), as the shipped copy's records have it: the results file reads the same with the folder and,
    on a fresh clone, without it."""
    if not in_folder or not as_shipped:
        return
    from workbench.models.io import weights_fingerprint

    name = next(iter(as_shipped.values()))["shipped"]
    folder_weights = weights_fingerprint(run.dir(root) / "model")
    if folder_weights is not None and folder_weights == weights_fingerprint(Path(assets) / name):
        for record in in_folder.values():
            record["shipped"] = name


def _add(groups: dict, run, figures: dict) -> None:
    for view, record in figures.items():
        row = groups.setdefault((run.task, view), {}).setdefault(run.row, {"seeds": [], "runs": []})
        row["seeds"].append(run.seed)
        row["runs"].append({"seed": run.seed, **record})


def summarise(grid: Grid, rows: dict) -> None:
    """Mean, sample std and values per metric of each row (per question type too, and the in-domain test of
    a shifted view); then each row against the baseline row on the grid's first metric."""
    for row in rows.values():
        runs = row["runs"]
        for metric in grid.metrics:
            row[metric] = summary([r[metric] for r in runs])
        if any("per_type" in r for r in runs):
            qtypes = sorted({q for r in runs for q in r.get("per_type", {})})
            row["per_type"] = {q: summary([r["per_type"][q] for r in runs if q in r["per_type"]]) for q in qtypes}
        if all("in_domain" in r for r in runs):
            row["in_domain"] = summary([r["in_domain"] for r in runs])
    base, metric = rows.get(grid.baseline), grid.metrics[0]
    for name, row in rows.items():
        if base is not None and name != grid.baseline:
            row["vs_baseline"] = versus(row[metric]["values"], base[metric]["values"], grid.baseline, metric)


def results_table(grid: Grid | str, document: dict) -> str:
    """The markdown table of a results document (the grid's section of docs/results.md)."""
    grid = as_grid(grid)
    return layout(grid).table(grid, document)


def results_path(grid: Grid | str, assets: Path) -> Path:
    """assets/results/<the grid's results file>."""
    return Path(assets) / "results" / as_grid(grid).results


def read_results(path: Path) -> dict | None:
    """A results document written earlier (None if there is none)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def write_results(document: dict, path: Path) -> None:
    from workbench.models.io import write_json_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, document)
