"""Tables of measured results, made from the shipped checkpoints' own `workbench.json` (never typed by hand)."""

from __future__ import annotations

import json
import re
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def teacher_table(assets: str | Path) -> str:
    """Markdown: one row per shipped checkpoint, accuracy overall and per question type."""
    rows = []
    for meta_path in sorted(Path(assets).glob("*/workbench.json")):
        meta = json.loads(meta_path.read_text())
        test = meta["metrics"]["test"]
        cfg = meta.get("train_config", {})
        size_mb = sum(p.stat().st_size for p in meta_path.parent.iterdir()) / 2**20
        per_type = ", ".join(f"{q} {100 * m['accuracy']:.1f}" for q, m in test["per_type"].items())
        minutes = meta.get("train_seconds", 0) / 60
        rows.append(
            f"| `{meta_path.parent.name}` | {meta['dataset']} | {meta['kind']} | {100 * test['accuracy']:.2f} "
            f"(n={test['n']}) | {per_type} | {meta.get('steps', '?')} steps x {cfg.get('batch_size', '?')}, "
            f"{minutes:.1f} min | {size_mb:.1f} MB |"
        )
    head = (
        "| checkpoint | data | model | test accuracy % | per question type (test, %) | training on this CPU | size |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def update_readme(readme: str | Path, assets: str | Path) -> bool:
    """Replace the text between the results markers; True if the README changed."""
    readme = Path(readme)
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no {START} ... {END} section")
    new = pattern.sub(lambda _: f"{START}\n{teacher_table(assets)}\n{END}", text)
    readme.write_text(new)
    return new != text
