"""Running a grid: every run not finished (nor recorded by the last results file, nor shipped as its model) and
not claimed by another worker, in order, each trained with `workbench.methods.distill` and then tested on its
setting's extra splits.

Several workers (terminals, sessions, machines sharing the folder) may run one grid: a run is claimed with a
lock file (`locks`), a dead worker's run is taken over and resumes from its last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import CheckpointError
from workbench.experiments.grid import Grid, Run, as_grid
from workbench.experiments.grid import select as select_runs
from workbench.experiments.locks import claim, is_done, release
from workbench.experiments.measure import (
    all_recorded,
    current,
    eval_path,
    fingerprints,
    finished,
    measured,
    method_fingerprints_now,
    rebuilt_teacher,
    shipped,
)
from workbench.experiments.teachers import check_mad_teachers, prepare_mcad_teachers, waiting
from workbench.train.teachers_seen import changed_in_run

PREPARE = {"mad-teachers": check_mad_teachers, "mcad-teachers": prepare_mcad_teachers}
WAITING = {"mcad-teachers": waiting}  # prepare steps whose runs may wait for what they build


def run_grid(
    grid: Grid | str,
    root: Path,
    assets: Path,
    select: dict | None = None,
    progress: bool = True,
    previous: dict | None = None,
    paths: dict | None = None,
    rerun: bool = False,
) -> list[str]:
    """Run the grid's unfinished runs in order; returns the folders (relative to `root`) this call finished.

    `select`: {"tasks", "settings", "seeds", "rows"} (each None or a list: all); `previous`: the last results
    document (a run it records counts as finished, its folder may be gone); `paths`: teachers given instead of
    the grid's (e.g. {"dual_teacher": DIR}). A run whose teacher was rebuilt since it ran is set aside
    (`<folder>.teacher-<fingerprint>`) and runs again. `rerun`: the selected runs train again even where `previous`
    records them (the recipe changed in a way no fingerprint shows); a run finished in `root` still counts."""
    from workbench.experiments.collect import layout

    grid, root, assets = as_grid(grid), Path(root), Path(assets)
    runs = select_runs(grid.runs(paths), **(select or {}))
    before = layout(grid).rows_of(grid, previous) if previous else {}
    todo = _to_train(grid, runs, root, assets, before, rerun)
    done = PREPARE[grid.prepare](grid, root, assets, todo, paths, progress) if grid.prepare else []
    if done:  # a teacher built just now: runs of its earlier build are stale now, not when the call began
        todo = _to_train(grid, runs, root, assets, before, rerun)
    wait = WAITING.get(grid.prepare)
    for run in todo:
        missing = wait(grid, run, root, assets) if wait else []
        if missing:
            print(f"-- {run.name}: waiting for the {' and '.join(missing)} teacher")
            continue
        if not claim(run.dir(root)):  # another worker has it
            continue
        try:
            if finished(grid, run, root):  # another worker finished it since we looked
                continue
            _set_aside_if_started_against_rebuilt(run.dir(root))
            print(f"== {grid.name}: {run.folder}")
            train_run(grid, run, root, assets, progress)
            done.append(run.folder)
        finally:
            release(run.dir(root))
    return done


def _to_train(grid: Grid, runs, root: Path, assets: Path, before: dict, rerun: bool) -> list[Run]:
    """The runs to train, in order: neither finished in `root` nor recorded (by the last results file, or shipped
    as the model the run would make: `measure.shipped`) as the run is now; a finished folder of a since-rebuilt
    teacher or an earlier recipe is set aside first."""
    prints = fingerprints(grid, runs, root, assets)
    method_prints = method_fingerprints_now(grid, runs, root, assets)
    todo = []
    for run in runs:
        fingerprint, others = prints.get(run.task), method_prints.get(run.task)
        _set_aside_if_stale(grid, run, root, fingerprint, others)
        known = not rerun and any(
            current(grid, run, figures, fingerprint, others)
            for figures in (*all_recorded(before, grid, run), shipped(grid, run, assets))
        )
        if not finished(grid, run, root) and not known:
            todo.append(run)
    return todo


def _set_aside_if_stale(
    grid: Grid, run: Run, root: Path, fingerprint: str | None, method_prints: dict | None = None
) -> None:
    """A finished run distilled from a teacher since rebuilt, or trained to another recipe than the run's now, is
    renamed aside (`<folder>.teacher-<fingerprint>`, `<folder>.recipe-<n>`), so it runs again."""
    figures = measured(grid, run, root)
    if not figures or current(grid, run, figures, fingerprint, method_prints):
        return
    if rebuilt := rebuilt_teacher(next(iter(figures.values())), fingerprint, method_prints):
        _rename_aside(run.dir(root), f"teacher-{rebuilt.seen}")
    else:
        _rename_aside(run.dir(root), "recipe", numbered=True)


def _set_aside_if_started_against_rebuilt(run_dir: Path) -> None:
    """An unfinished run (under this worker's lock) one of whose teachers was rebuilt since it started is renamed
    aside (`<folder>.teacher-<fingerprint>`) and starts over: its saved state learned from the earlier weights."""
    try:
        changed = changed_in_run(run_dir)
    except CheckpointError as e:  # its record is unreadable: which teachers it learned from is unknown
        print(f"-- {run_dir.name}: {e}; set aside")
        _rename_aside(run_dir, "unreadable", numbered=True)
        return
    if changed:
        print(f"-- {run_dir.name}: its {changed[0].field.replace('_', ' ')} was rebuilt since it started; set aside")
        _rename_aside(run_dir, f"teacher-{changed[0].seen}")


def _rename_aside(out: Path, tag: str, numbered: bool = False) -> None:
    """`out` renamed to `<out>.<tag>` (`numbered`, or when that is taken: `<out>.<tag>-<n>`, the first free n)."""
    name, n = (f"{out.name}.{tag}-1", 1) if numbered else (f"{out.name}.{tag}", 1)
    while out.with_name(name).exists():
        n += 1
        name = f"{out.name}.{tag}-{n}"
    out.rename(out.with_name(name))


def train_run(grid: Grid, run: Run, root: Path, assets: Path, progress: bool = True) -> None:
    """Train one run (resuming its state if it has one), then test it on its setting's extra splits."""
    from workbench.methods import distill

    cfg = run.train_config(root, assets, grid.student)
    out = Path(cfg.out)
    if not is_done(out):
        resume = out.exists()  # an interrupted run continues from its last state (none saved: from scratch)
        distill(cfg, run.method_config(root, assets), resume=resume, progress=progress)
    for split in grid.extra_splits(run.setting):
        if not eval_path(run, root, split).exists():
            path = eval_path(run, root, split)
            evaluate_split(out / "model", run.task, split, cfg.test_size, path, progress, kind=grid.student,
                           data_root=cfg.data_root)  # fmt: skip


def evaluate_split(
    model_dir: Path,
    task: str,
    split: str,
    size: int | None,
    out: Path,
    progress: bool = True,
    kind: str | None = None,
    data_root: str | None = None,
) -> dict:
    """A checkpoint's metrics on one split of its dataset, written to `out` (as `workbench eval` would); a real
    dataset is read from `data_root` with the checkpoint's answer vocabulary and image pipeline."""
    from workbench.data import Collator, load_dataset
    from workbench.evaluate import evaluate, format_metrics
    from workbench.models.io import load_checkpoint, write_json_atomic

    ck = load_checkpoint(model_dir, kind=kind)
    labels = list(ck.labels) if data_root else None
    data = load_dataset(task, split, size, data_root=data_root, labels=labels)
    metrics = evaluate(ck.model, data, Collator.for_checkpoint(ck), progress=progress)
    metrics.update({"checkpoint": str(model_dir), "dataset": task, "split": split})
    write_json_atomic(out, metrics)
    print(f"{split}: {format_metrics(metrics)}")
    return metrics
