"""One experiment runner for every grid; the grids themselves are data (`workbench.configs.grids`).

    from workbench.experiments import get_grid, run_grid, collect, results_table, results_path, ...
    grid = get_grid("mad")                      # "dide", "mad", "mcad" (preset="smoke": MCAD in minutes)
    run_grid(grid, "runs/mad", "assets", select={"settings": ["low1"]}, previous=read_results(path))
    doc = collect(grid, "runs/mad", "assets", previous=read_results(path))
    write_results(doc, path); print(results_table(grid, doc))

Modules: `grid` (the data as `Grid` and `Run`), `locks` (claiming run folders), `runner` (running),
`measure` (a run's figures), `collect` (rows, statistics, the results document), `stats` (mean, sample std,
Welch's t-test and the claim rule), `teachers` (the grids' prepare steps), `layout_*` (each results file's
shape and table).
"""

from workbench.experiments.collect import collect, read_results, results_path, results_table, write_results
from workbench.experiments.grid import Grid, Run, get_grid, grid_names, select, shipped_run
from workbench.experiments.layout_views import margins_line
from workbench.experiments.locks import claim, is_done, release
from workbench.experiments.runner import run_grid, train_run

__all__ = [
    "Grid",
    "Run",
    "claim",
    "collect",
    "get_grid",
    "grid_names",
    "is_done",
    "margins_line",
    "read_results",
    "release",
    "results_path",
    "results_table",
    "run_grid",
    "select",
    "shipped_run",
    "train_run",
    "write_results",
]
