"""A grid's data (`workbench.configs.grids`) as typed objects: the `Grid`, its `Run`s in order, and each run's
`TrainConfig` and method config."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

TEST_VIEW = {"test": {"setting": "", "split": "test"}}  # a grid without views: its runs on the test split


@dataclass(frozen=True)
class Grid:
    """One grid: `workbench.configs.grids` documents every field."""

    name: str
    results: str
    layout: str
    student: str
    rows: dict
    blocks: tuple
    budget: dict
    folder: str = "{task}/{name}"
    paths: dict = field(default_factory=dict)
    fingerprint: str | None = None
    checked_teachers: tuple = ()
    task_budgets: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    seeds: tuple = (0,)
    views: dict = field(default_factory=lambda: dict(TEST_VIEW))
    baseline: str = "none"
    metrics: tuple = ("accuracy",)
    claims: dict = field(default_factory=dict)
    prepare: str | None = None
    teachers: dict = field(default_factory=dict)
    teacher_notes: dict = field(default_factory=dict)
    teacher_budgets: dict = field(default_factory=dict)
    shipped: dict = field(default_factory=dict)
    presets: dict = field(default_factory=dict)
    preset: str | None = None
    rerank_k: int | None = None
    # a recorded run without a recipe digest counts as current (None: it cannot be told apart from one of today's
    # recipe), or is earlier for this reason (the grid's recipe is known to have changed since such records were
    # written; the table says it of each)
    undigested_earlier: str | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for block in self.blocks for t in block["tasks"]))

    def views_of(self, setting: str) -> dict[str, str]:
        """{view: split} of the views a setting's runs fill."""
        return {v: spec["split"] for v, spec in self.views.items() if spec["setting"] == setting}

    def extra_splits(self, setting: str) -> tuple[str, ...]:
        """Splits a setting's runs are tested on after training, besides the test split in the model folder."""
        return tuple(dict.fromkeys(s for s in self.views_of(setting).values() if s != "test"))

    def runs(self, paths: dict | None = None) -> tuple[Run, ...]:
        """Every run in order; `paths` replaces some of the grid's `paths` (e.g. a given teacher's folder)."""
        paths = {**self.paths, **{k: v for k, v in (paths or {}).items() if v}}
        runs = (self._run(b, task, seed, row, paths) for b in self.blocks for task in b["tasks"]
                for seed in b.get("seeds", self.seeds) for row in b["rows"])  # fmt: skip
        return tuple(dict.fromkeys(runs))

    def _run(self, block: dict, task: str, seed: int, row: str, paths: dict) -> Run:
        spec, setting = self.rows[row], block.get("setting", "")
        name = f"{spec['method']}{spec.get('tag', '')}-seed{seed}"
        budget = {**self.task_budgets.get(task, self.budget), **self.settings.get(setting, {})}
        return Run(
            grid=self.name,
            task=task,
            row=row,
            method=spec["method"],
            seed=seed,
            setting=setting,
            folder=self.folder.format(task=task, setting=setting, name=name),
            budget={**budget, **spec.get("budget", {})},
            config=dict(spec.get("config", {})),
            paths={k: v.replace("{task}", task) for k, v in paths.items()},
        )


@dataclass(frozen=True)
class Run:
    """One training run of a grid, as data. `folder` is relative to the grid's root folder; `paths` may hold
    `{root}` and `{assets}` (resolved by `train_config` / `method_config`)."""

    grid: str
    task: str  # the dataset
    row: str  # the table row
    method: str  # a registered method (`workbench.methods`)
    seed: int = 0
    setting: str = ""
    folder: str = ""
    budget: dict = field(default_factory=dict, hash=False)  # TrainConfig fields
    config: dict = field(default_factory=dict, hash=False)  # the method's Config fields
    paths: dict = field(default_factory=dict, hash=False)  # teachers and caches (TrainConfig or Config fields)

    @property
    def name(self) -> str:
        return Path(self.folder).name

    def dir(self, root: Path) -> Path:
        return Path(root) / self.folder

    @property
    def recipe_digest(self) -> str:
        """A short digest of the grid's data for the run (method, dataset, seed, budget, the row's method config;
        not the code's defaults): a recorded run whose digest differs was trained to an earlier recipe of its row.
        Defaults are checked where a model's saved config is at hand (`recipe.same_recipe`)."""
        text = json.dumps([self.method, self.task, self.seed, self.budget, self.config], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def resolved_paths(self, root: Path, assets: Path) -> dict[str, str]:
        return {k: v.format(root=root, assets=assets) for k, v in self.paths.items()}

    def train_config(self, root: Path, assets: Path, student: str):
        from workbench.train import TrainConfig

        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        paths = {k: v for k, v in self.resolved_paths(root, assets).items() if k in fields}
        return TrainConfig(model=student, dataset=self.task, out=str(self.dir(root)), seed=self.seed,
                           recipe=self.method, **paths, **self.budget)  # fmt: skip

    def method_config(self, root: Path, assets: Path):
        """The method's Config: its defaults, the row's `config`, and the paths it has fields for."""
        from workbench.methods import get_method

        method = get_method(self.method)
        fields = {f.name for f in dataclasses.fields(method.Config)}
        paths = {k: v for k, v in self.resolved_paths(root, assets).items() if k in fields}
        return method.config(**{**paths, **self.config})


def get_grid(name: str, preset: str | None = None) -> Grid:
    """The grid named in `workbench.configs.grids.GRIDS`, with a preset's data over its own (default: the
    grid's `preset`); its rows' methods are checked against the registry."""
    from workbench.configs.grids import GRIDS

    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; grids: {', '.join(GRIDS)}")
    data = dict(GRIDS[name])
    preset = preset or data.get("preset")
    if preset is not None:
        presets = data.get("presets", {})
        if preset not in presets:
            raise ValueError(f"grid {name!r} has no preset {preset!r}; presets: {', '.join(presets) or 'none'}")
        data.update(presets[preset], preset=preset)
    grid = Grid(**data)
    _check_methods(grid)
    return grid


def grid_names() -> tuple[str, ...]:
    from workbench.configs.grids import GRIDS

    return tuple(GRIDS)


def _check_methods(grid: Grid) -> None:
    from workbench.methods import get_method

    for spec in grid.rows.values():
        get_method(spec["method"])  # raises naming the registered methods


def as_grid(grid: Grid | str) -> Grid:
    return grid if isinstance(grid, Grid) else get_grid(grid)


def select(runs, tasks=None, settings=None, seeds=None, rows=None) -> tuple[Run, ...]:
    """The runs on these tasks / settings / seeds / rows (None or empty: all), in grid order. A row or task
    that no run has is an error (a typo would otherwise select nothing)."""
    for what, wanted, have in (("rows", rows, {r.row for r in runs}), ("tasks", tasks, {r.task for r in runs})):
        unknown = sorted(set(wanted or ()) - have)
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; the grid has {sorted(have)}")
    return tuple(
        r
        for r in runs
        if (not tasks or r.task in tasks)
        and (not settings or r.setting in settings)
        and (not seeds or r.seed in seeds)
        and (not rows or r.row in rows)
    )


def shipped_run(grid: Grid, name: str) -> Run:
    """The run whose model is shipped as assets/<name> (seed 0 of its row)."""
    task, row = grid.shipped[name]
    (run,) = select(grid.runs(), tasks=(task,), rows=(row,), seeds=(0,))
    return run
