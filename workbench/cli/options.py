"""Command-line options made from a config dataclass's fields, so no default is typed twice.

`add_options(parser, TrainConfig)` adds `--field-name` for every field whose type argparse can read (int,
float, str, bool, Literal, tuples / lists of those, each optionally `| None`); a field of another type
(a dict, a free list) needs an `Option` that says how to read it, or is left out. Every option's argparse
default is SUPPRESS: `given(args, ...)` then returns only the flags the user typed, which override the
dataclass defaults, a command's own defaults or a `--config` file (`build`).

Help text comes from, first found: the command's `Option.help`, the field's `metadata["help"]`, or the
comment at the end of the field's line in the dataclass source (the table the dataclass already is).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

NONE_WORDS = ("none", "None")  # an `X | None` option takes these for None (e.g. --vision-teacher none)


@dataclass(frozen=True)
class Option:
    """What a command says about one field when its type alone is not enough."""

    help: str | None = None
    flag: str | None = None  # the option's name when not --field-name (e.g. a short historical name)
    convert: Callable[[Any], Any] | None = None  # parsed value -> field value (e.g. `parse_curriculum`)
    kwargs: dict = field(default_factory=dict)  # argparse keywords: nargs, metavar, choices, type, ...
    show_default: bool = True  # False: the help says what the default is (or it does not apply)


def field_help(cls: type) -> dict[str, str]:
    """{field: help}: `metadata["help"]`, else the comment closing the field's line in the class source, else
    the comment lines right above the field."""
    comments: dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a class made at run time): metadata only
        source = ""
    above: list[str] = []
    for line in source.splitlines():
        if m := re.match(r"\s+#\s?(.*)$", line):
            above.append(m.group(1).strip())
            continue
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
        elif (m := re.match(r"\s+(\w+)\s*:", line)) and above:
            comments[m.group(1)] = " ".join(above)
        above = []
    return {f.name: f.metadata.get("help") or comments.get(f.name, "") for f in dataclasses.fields(cls)}


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _optional(hint: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _scalar(kind: type, nullable: bool) -> Callable[[str], Any]:
    def read(text: str):
        return None if nullable and text in NONE_WORDS else kind(text)

    read.__name__ = kind.__name__  # argparse names the type in its error messages
    return read


def argparse_kwargs(hint: Any) -> dict | None:
    """argparse keywords reading a value of type `hint`; None when argparse cannot read it from words."""
    hint, nullable = _optional(hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": _scalar(hint, nullable)}
    if origin is typing.Literal:
        return {"choices": list(typing.get_args(hint))}
    if origin in (tuple, list):
        inner = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(set(inner)) == 1 and inner[0] in (int, float, str):
            return {"nargs": "+", "type": inner[0]}
    return None


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    return str(value) if value != {} else "none"


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    options: dict[str, Option] | None = None,
    skip: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
    notes: dict[str, str] | None = None,
) -> dict[str, str]:
    """Add an option per field of dataclass `cls`; returns {argparse dest: field name} for `given`.

    `defaults`: the command's own defaults (shown in the help; `build` applies them); `notes`: text added to a
    field's help (e.g. which recipes use it and their defaults)."""
    options, defaults, notes = options or {}, defaults or {}, notes or {}
    hints, helps, dests = typing.get_type_hints(cls), field_help(cls), {}
    for f in dataclasses.fields(cls):
        opt = options.get(f.name, Option())
        kwargs = {**(argparse_kwargs(hints[f.name]) or {}), **opt.kwargs}
        if f.name in skip or not kwargs:
            continue
        text = opt.help or helps[f.name]
        default = defaults.get(f.name, field_default(f))
        if f.name in notes:
            text = f"{text} ({notes[f.name]})" if text else notes[f.name]
        elif opt.show_default and default not in (None, dataclasses.MISSING) and not kwargs.get("required"):
            text = f"{text} (default: {_show(default)})" if text else f"default: {_show(default)}"
        dest = f"{cls.__name__}.{f.name}"
        flag = opt.flag or "--" + f.name.replace("_", "-")
        if kwargs.get("action") is None and "choices" not in kwargs:
            kwargs.setdefault("metavar", f.name.upper())  # not the dest's class prefix
        kwargs.setdefault("default", argparse.SUPPRESS)
        parser.add_argument(flag, dest=dest, help=text.replace("%", "%%"), **kwargs)
        dests[dest] = f.name
    return dests


def given(args: argparse.Namespace, dests: dict[str, str], options: dict[str, Option] | None = None) -> dict:
    """{field: value} of the options the user typed, each through its `Option.convert` if it has one. A converted
    list typed as the single word `none` is the empty one, as the help shows an empty default (`_show`): so
    `--curriculum none` clears a curriculum recorded in a `--config`."""
    options, out = options or {}, {}
    for dest, name in dests.items():
        if hasattr(args, dest):
            value = getattr(args, dest)
            convert = options.get(name, Option()).convert
            if convert and isinstance(value, list) and len(value) == 1 and value[0] in NONE_WORDS:
                value = []
            out[name] = convert(value) if convert else value
    return out


def as_declared(cls: type, values: dict) -> dict:
    """Lists given for tuple-typed fields (JSON and nargs give lists) as tuples, so configs compare equal."""
    hints = typing.get_type_hints(cls)
    tuples = {n for n, h in hints.items() if typing.get_origin(_optional(h)[0]) is tuple}
    return {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in values.items()}


def build(cls: type, flags: dict, *, file: str | Path | None = None, defaults: dict | None = None) -> Any:
    """A `cls` from a saved config file (else from the command's `defaults`), then the typed `flags` on top."""
    base = read_config(file, cls) if file else cls(**as_declared(cls, defaults or {}))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(flags) - names)
    if unknown:
        raise WorkbenchError(f"{cls.__name__} has no field {', '.join(unknown)}")
    return dataclasses.replace(base, **as_declared(cls, flags))


def names_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a checkpoint folder (its workbench.json records the training config) and not a run."""
    path = Path(path)
    return path.is_dir() and not (path / "train_config.json").exists() and (path / "workbench.json").exists()


def read_config(path: str | Path, cls: type) -> Any:
    """A saved config (e.g. a run's train_config.json, or the run folder holding it) as a `cls`; a checkpoint
    folder (a shipped model) gives the config it was trained with, so its recipe can be run again (other seeds)."""
    path = Path(path)
    checkpoint = names_checkpoint(path)
    if path.is_dir():  # a run folder: the config it saved; a checkpoint: its record, which holds the config
        path = path / ("workbench.json" if checkpoint else "train_config.json")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise WorkbenchError(f"no config file {path}") from e
    except (OSError, ValueError) as e:
        raise WorkbenchError(f"{path} is not a readable JSON file: {e}") from e
    if checkpoint:
        data = data.get("train_config") if isinstance(data, dict) else None
        if data is None:
            raise WorkbenchError(f"{path} records no training config (a checkpoint saved by an older version?)")
    if not isinstance(data, dict):
        raise WorkbenchError(f"{path} holds no {cls.__name__} (a JSON object of its fields)")
    from_dict = getattr(cls, "from_dict", None)
    try:
        if callable(from_dict):  # the dataclass knows its own format (older files, nested fields)
            return from_dict(data, source=str(path))
        return cls(**as_declared(cls, data))
    except TypeError as e:  # a field this version does not know
        raise WorkbenchError(f"{path} is not a {cls.__name__}: {e}") from e
