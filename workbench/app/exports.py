"""The app's downloads: the Ask tab's answers (JSON), the Attention tab's maps (NPZ and JSON; PNG too when
kaleido is installed, else the plot's own camera button saves one), the Speed tab's table (CSV). Every file is
written under a new name in one temporary folder per app (`Exports`)."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

# plotly writes PNG files through kaleido, an optional package: without it the maps are exported as data only
PNG_EXPORT = importlib.util.find_spec("kaleido") is not None
NO_PNG = ("PNG: not written (kaleido is not installed); the camera button above the plot saves the picture "
          "shown.")  # fmt: skip


def slug(text: str) -> str:
    """`text` as a file-name part: letters and digits, the rest turned into single dashes."""
    return "-".join("".join(c if c.isalnum() else " " for c in str(text)).split()).lower() or "x"


class Exports:
    """One temporary folder per app; `path(stem, suffix)` a new file name in it."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="workbench-app-"))
        self._count = itertools.count(1)

    def path(self, stem: str, suffix: str) -> Path:
        return self.folder / f"{slug(stem)}-{next(self._count):05d}{suffix}"


def _plain(value):
    """JSON-ready: numpy arrays and numbers as lists and floats, tuples as lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def answers_json(exports: Exports, pair: str, question: str, images: list, results: dict[str, dict]) -> str:
    """The Ask tab's answers as JSON: the pair, the question, the images' sizes, and each model's checkpoint and
    `workbench.api.ask` result (top answers, latency, unknown words, warnings)."""
    data = {
        "pair": pair,
        "question": question,
        "images": [{"width": im.width, "height": im.height} for im in images],
        "models": {role: {"checkpoint": ck_name, **_plain(r)} for role, (ck_name, r) in results.items()},
    }
    path = exports.path(f"answers-{pair}", ".json")
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    return str(path)


def maps_files(exports: Exports, info: dict, maps: dict[str, np.ndarray], figures: list) -> tuple[list[str], str]:
    """The Attention tab's maps: an NPZ of the arrays (one per panel label) and a JSON of `info` (pair, question,
    method, layer, head, word, tokens, agreement) with the same arrays as lists; a PNG of each figure when kaleido
    is installed. Returns (the files, a note on the PNG)."""
    stem = f"maps-{info.get('method', '')}-{info.get('pair', '')}"
    npz = exports.path(stem, ".npz")
    keys = {f"map_{k}": np.asarray(m, dtype=np.float64) for k, m in enumerate(maps.values())}
    np.savez(npz, labels=np.array(list(maps)), **keys)
    js = npz.with_suffix(".json")
    js.write_text(json.dumps({**_plain(info), "maps": {label: _plain(m) for label, m in maps.items()}}, indent=1))
    files = [str(npz), str(js)]
    if not PNG_EXPORT:
        return files, NO_PNG
    for k, fig in enumerate(figures):
        png = npz.with_name(f"{npz.stem}-{k}.png")
        fig.write_image(png)
        files.append(str(png))
    return files, ""


SPEED_COLUMNS = ["section", "path", "label", "batch_size", "n_images", "median_s", "iqr_s", "per_example_ms",
                 "throughput_per_s", "flops_per_example", "peak_memory_bytes", "extrapolated"]  # fmt: skip


def speed_rows(result: dict) -> list[dict]:
    """A `workbench.bench.benchmark_pair` result as rows: one per path and batch size (latency), one per model
    and gallery size (retrieval)."""
    rows = []
    for name, path in result["paths"].items():
        for cell in path["batches"].values():
            rows.append({"section": "latency", "path": name, "label": path["label"], **cell})
    for entry in result.get("retrieval", {}).get("entries", []):
        for side in ("teacher", "student"):
            rows.append({"section": "retrieval", "path": side, "n_images": entry["n_images"], **entry[side]})
    return [{c: row.get(c, "") for c in SPEED_COLUMNS} for row in rows]


def speed_csv(exports: Exports, result: dict) -> str:
    """The Speed tab's measurements (`speed_rows`) as CSV."""
    path = exports.path("speed", ".csv")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SPEED_COLUMNS)
        writer.writeheader()
        writer.writerows(speed_rows(result))
    return str(path)
