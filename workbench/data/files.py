"""Reading dataset files from disk, with errors that name the file and say what was expected.

The errors are `DatasetError`s, `WorkbenchError`s (the CLI prints their message, no traceback):

* `DatasetLayoutError` (also a `FileNotFoundError`): a file or folder is not where the release puts it, or a
  file belongs to another split. The message names every path it looked for.
* `DatasetSplitError` (also a `ValueError`): a split name the dataset does not have; the message lists its splits.
* `DatasetFormatError` (also a `ValueError`): a file that exists but does not parse, lacks a field of its
  format, or an image PIL cannot decode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from workbench.errors import WorkbenchError


class DatasetError(WorkbenchError):
    """A local dataset copy the workbench cannot read as asked."""


class DatasetLayoutError(DatasetError, FileNotFoundError):
    """A dataset folder is not laid out as its release is: the message names the files expected."""


class DatasetSplitError(DatasetError, ValueError):
    """A split the dataset does not have."""


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file does not parse, lacks a field, or an image cannot be decoded."""


def require_file(path: Path, fmt: str, what: str = "file") -> Path:
    if not path.is_file():
        raise DatasetLayoutError(f"{fmt}: expected {what} {path} does not exist")
    return path


def require_dir(path: Path, fmt: str, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{fmt}: expected folder {path} ({what}) does not exist")
    return path


def require_layout(fmt: str, split: str, expected: Sequence[Path]) -> None:
    """One error naming every missing file or folder (no suffix: a folder) of a split, and all it needs."""
    missing = [p for p in expected if not p.exists()]
    if missing:
        needs = ", ".join(str(p) + ("/" if p.suffix == "" else "") for p in expected)
        raise DatasetLayoutError(f"{fmt} {split}: missing {', '.join(map(str, missing))}; the split needs {needs}")


def check_split(split: str, splits: Sequence[str], fmt: str, aliases: dict[str, str] | None = None) -> str:
    """The release's name of `split`, or one error listing the names the dataset has."""
    aliases = aliases or {}
    if split in splits:
        return split
    if split in aliases:
        return aliases[split]
    alias_text = ", ".join(f"{a} = {b}" for a, b in aliases.items())
    raise DatasetSplitError(
        f"{fmt} has no split {split!r}; its splits are {', '.join(splits)}" + (f" ({alias_text})" if aliases else "")
    )


def read_json(path: Path, fmt: str) -> Any:
    try:
        return json.loads(require_file(path, fmt).read_text(encoding="utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise DatasetFormatError(f"{fmt}: {path} is not valid JSON: {e}") from e


def read_jsonl(path: Path, fmt: str) -> list[Any]:
    rows = []
    with require_file(path, fmt).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise DatasetFormatError(f"{fmt}: line {n} of {path} is not valid JSON: {e}") from e
    return rows


@contextmanager
def fields(path: Path, fmt: str) -> Iterator[None]:
    """A record missing a field (or of the wrong shape) is a malformed file: say which file."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise DatasetFormatError(f"{fmt}: malformed record in {path}: {e!r}") from e


def open_rgb(path: Path, fmt: str) -> Image.Image:
    """The image at `path` as RGB, fully read (the file is closed on return)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise DatasetLayoutError(f"{fmt}: expected image {path} does not exist") from e
    except OSError as e:  # PIL's UnidentifiedImageError and truncated-data errors are OSErrors
        raise DatasetFormatError(f"{fmt}: cannot read image {path}: {e}") from e
