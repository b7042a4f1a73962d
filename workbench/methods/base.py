"""The Method contract and its registry (timm-style: every entry is registered, tests run over all of them).

A method is one way of training a student: the baselines (`none`, `kd`, `clip`, ...), DiDE, MAD, MCAD and
their ablations. Each registry entry says

- `name`, a one-line `summary`, the `task` family it trains ("answer": VQA / VE / NLVR classifiers;
  "retrieval": image-text retrieval), the `student` kind it trains ("dual" or "fusion");
- `Config`: one typed dataclass with every knob of the method (loss weights, layers, teachers, ...), and
  `defaults`, the entry's values of it (ablations are entries that share a Config and differ in defaults);
- `run(cfg, config, resume, progress) -> dict`: loads the teachers, builds the objective (an object with
  `loss(model, batch) -> (loss, logs)`) and trains with the one trainer (`workbench.train.train`).

The CLI's choices and options, the app's dropdowns, the experiment grids and the tests all read this
registry; nothing else lists method names. docs/adding-a-method.md walks through adding one.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

TASKS = ("answer", "retrieval")
STUDENTS = ("dual", "fusion")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    task: str
    student: str
    Config: type
    run: Callable[..., dict] = field(repr=False)
    defaults: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"method {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if self.student not in STUDENTS:
            raise ValueError(f"method {self.name!r}: student must be one of {STUDENTS}, got {self.student!r}")
        if not dataclasses.is_dataclass(self.Config):
            raise TypeError(f"method {self.name!r}: Config must be a dataclass")
        self.config(**{})  # the defaults must name fields of Config

    def config(self, **overrides) -> Any:
        """The method's config: its defaults, then `overrides` (unknown names raise a TypeError naming them)."""
        return self.Config(**{**self.defaults, **overrides})

    def config_from_dict(self, values: dict) -> Any:
        """A config back from `asdict` / JSON (a run's `train_config.json` keeps it in `recipe_args`): lists
        become the tuples the dataclass declares; names it does not have raise a clear error."""
        values = _flatten_legacy(values)
        upgrade = getattr(self.Config, "from_legacy", None)  # a method's own reading of its older configs
        if upgrade is not None:
            values = upgrade(values)
        known = {f.name: f for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"method {self.name!r} has no option(s) {unknown}; it has {sorted(known)}")
        hints = typing.get_type_hints(self.Config)
        fixed = {k: tuple(v) if _is_tuple(hints.get(k)) and isinstance(v, list) else v for k, v in values.items()}
        return self.config(**fixed)

    def describe(self) -> dict:
        """Plain data for tables, the app and `workbench distill --help`."""
        return {"name": self.name, "summary": self.summary, "task": self.task, "student": self.student,
                "config": asdict(self.config())}  # fmt: skip


def _flatten_legacy(values: dict) -> dict:
    """Runs before the registry kept their options nested: {"weights": {...}, "layers": [...]} (DiDE, MCAD,
    with MCAD's teacher paths beside) and {"mad": {...}}. Shipped checkpoints carry those; they load as one
    flat config."""
    flat = {k: v for k, v in values.items() if k not in ("weights", "mad")}
    for key in ("weights", "mad"):
        flat.update(values.get(key) or {})
    return flat


def _is_tuple(hint) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")
    return METHODS[name]


def method_names(task: str | None = None, student: str | None = None) -> tuple[str, ...]:
    """Registered names in registration order, optionally only those of one task family / student kind."""
    return tuple(
        n for n, m in METHODS.items() if (task is None or m.task == task) and (student is None or m.student == student)
    )


def distill(cfg, config=None, *, resume: bool = False, progress: bool = True) -> dict:
    """Train `cfg.out/model` with the method named `cfg.recipe` and its `config` (None: the method's own
    defaults, or the config saved in `cfg.recipe_args` by an earlier run of it). Returns the trainer's
    {"val", "test", "steps", ...}."""
    method = get_method(cfg.recipe)
    if config is None:
        config = method.config_from_dict(cfg.recipe_args) if cfg.recipe_args else method.config()
    if not isinstance(config, method.Config):
        raise TypeError(f"method {method.name!r} takes a {method.Config.__name__}, got {type(config).__name__}")
    return method.run(cfg, config, resume=resume, progress=progress)
