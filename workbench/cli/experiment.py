"""`workbench experiment NAME`: run a results grid (workbench/configs/grids.py) with the one grid runner
(resumable; several workers may share it), collect its results JSON and publish its table.

The grid names, settings, presets and replaceable teacher paths offered here are read from the grids' data."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import add_publish_option, publish
from workbench.errors import WorkbenchError

NAME = "experiment"
DATA_ROOT = "data_root"  # the TrainConfig field a grid's `paths` entry (or --data-root) fills
HELP = "run a results grid (dide, mad, mcad; resumable) and write assets/results/NAME.json"


def _union(grids: dict, key: str) -> list[str]:
    """The keys of `key` (settings, presets, paths) over every grid, in order."""
    return list(dict.fromkeys(k for g in grids.values() for k in g.get(key, {})))


def _instead_of(grids: dict, key: str) -> str:
    """'instead of mcad's {root}/teachers/dual/model': the path templates a given path replaces."""
    return "instead of " + "; ".join(
        f"{g}'s {data['paths'][key]}" for g, data in grids.items() if key in data.get("paths", {})
    )


def _per_grid(grids: dict, key: str) -> str:
    """'mcad: full, smoke': the grids that have `key`, and theirs."""
    return "; ".join(f"{g}: {', '.join(data[key])}" for g, data in grids.items() if data.get(key))


def _describe(grids: dict) -> str:
    """One sentence per grid, from its data: its rows and its results file."""
    return " ".join(
        f"`{name}`: rows {', '.join(g['rows'])}; -> ASSETS/results/{g['results']}." for name, g in grids.items()
    )


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.configs.grids import GRIDS

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Run every unfinished run of a grid (workbench/configs/grids.py), then collect mean and std "
        "over seeds (and each row against the baseline row) into its results file and print its table. Start it "
        "in several terminals to run runs in parallel: each run is claimed with a lock file, and an interrupted "
        "run resumes from its last checkpoint. " + _describe(GRIDS),
    )
    p.add_argument("name", choices=list(GRIDS), help="which grid")
    p.add_argument("--runs", default=None, help="where the runs go (default: runs/NAME)")
    p.add_argument("--assets", default="assets")
    p.add_argument("--preset", default=None, choices=_union(GRIDS, "presets"),
                   help=f"a named variant of the grid's budgets ({_per_grid(GRIDS, 'presets')})")  # fmt: skip
    p.add_argument("--collect", action="store_true", help="do not train; only gather finished runs")
    p.add_argument("--rerun", action="store_true",
                   help="train the selected runs again even where the results file records them (after a recipe "
                   "change no teacher fingerprint shows); their new figures replace the recorded ones")  # fmt: skip
    p.add_argument("--results", default=None, help="results JSON (default: ASSETS/results/<the grid's file>)")
    add_publish_option(p, "the table")
    p.add_argument("--no-progress", action="store_true")
    pick = p.add_argument_group("only some runs (default: all of the grid's)")
    pick.add_argument("--tasks", nargs="+", default=None, help="only runs on these datasets")
    pick.add_argument("--settings", nargs="+", choices=_union(GRIDS, "settings"), default=None,
                      help=f"only runs of these settings ({_per_grid(GRIDS, 'settings')})")  # fmt: skip
    pick.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds")
    pick.add_argument("--rows", "--recipes", dest="rows", nargs="+", default=None, help="only these table rows")
    given = p.add_argument_group("teachers, caches and data given instead of the grid's")
    for key in _union(GRIDS, "paths"):
        given.add_argument(
            "--" + key.replace("_", "-"),
            dest=f"path.{key}",
            default=None,
            metavar="DIR",
            help=_instead_of(GRIDS, key),
        )
    if DATA_ROOT not in _union(GRIDS, "paths"):  # a grid on a real dataset may name its folder in `paths` instead
        given.add_argument(
            "--data-root",
            dest=f"path.{DATA_ROOT}",
            default=None,
            metavar="DIR",
            help="the folder of the grid's real datasets (vqav2, snli-ve, nlvr2) in their releases' layout; "
            "{task} stands for the dataset's name (e.g. /data/{task})",
        )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.experiments import collect, read_results, results_path, results_table, run_grid, write_results

    grid, root, assets = _grid(args), Path(args.runs or f"runs/{args.name}"), Path(args.assets)
    paths = {k.removeprefix("path."): v for k, v in vars(args).items() if k.startswith("path.") and v}
    out = Path(args.results) if args.results else results_path(grid, assets)
    previous = read_results(out)
    if not args.collect:
        picked = dict(tasks=args.tasks, settings=args.settings, seeds=args.seeds, rows=args.rows)
        _check_selection(grid, picked, paths)
        run_grid(grid, root, assets, select=picked, progress=not args.no_progress, previous=previous, paths=paths,
                 rerun=args.rerun)  # fmt: skip
    document = collect(grid, root, assets, previous=previous, paths=paths)
    write_results(document, out)
    publish(results_table(grid, document), out, args.readme, grid.name)


def _grid(args: argparse.Namespace):
    from workbench.experiments import get_grid

    try:
        return get_grid(args.name, args.preset)
    except ValueError as e:  # a preset this grid does not have
        raise WorkbenchError(str(e)) from e


def _check_selection(grid, picked: dict, paths: dict) -> None:
    """An unknown row or task is an error before any run starts (a typo would otherwise select nothing); so is a
    run on a real dataset without its folder, or a folder given to a grid that reads none."""
    from workbench.data import LAYOUTS, is_real_dataset
    from workbench.experiments import select

    try:
        runs = select(grid.runs(paths), **picked)
    except ValueError as e:
        raise WorkbenchError(str(e)) from e
    real = sorted({r.task for r in runs if is_real_dataset(r.task)})
    missing = [t for t in real if not {**grid.paths, **paths}.get(DATA_ROOT)]
    if missing:
        raise WorkbenchError(f"{', '.join(missing)} is read from disk: pass --data-root (the folder holding "
                             f"{LAYOUTS[missing[0]]}; {{task}} stands for the dataset's name)")  # fmt: skip
    if paths.get(DATA_ROOT) and not real:
        raise WorkbenchError(f"--data-root: the {grid.name} grid's runs are on generated datasets, which take none")
