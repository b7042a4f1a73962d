"""Tables of measured results, made from the shipped checkpoints' own `workbench.json` (never typed by hand)."""

from __future__ import annotations

import json
import re
from pathlib import Path


def teacher_table(assets: str | Path) -> str:
    """Markdown: one row per shipped checkpoint, accuracy overall and per question type."""
    rows = []
    for meta_path in sorted(Path(assets).glob("*/workbench.json")):
        meta = json.loads(meta_path.read_text())
        size_mb = sum(p.stat().st_size for p in meta_path.parent.iterdir()) / 2**20
        if meta.get("kind") == "mae":  # MAD's vision teacher: images only, no task, measured by reconstruction
            s = meta["settings"]
            rows.append(
                f"| `{meta_path.parent.name}` | shapes images | mae | - | masked-patch MSE {meta['final_loss']:.3f} | "
                f"{meta['steps']} steps x {s['batch_size']}, {meta['train_seconds'] / 60:.1f} min | {size_mb:.1f} MB |"
            )
            continue
        test = meta["metrics"]["test"]
        cfg = meta.get("train_config", {})
        per_type = ", ".join(f"{q} {100 * m['accuracy']:.1f}" for q, m in test["per_type"].items())
        minutes = meta.get("train_seconds", 0) / 60
        # a retrieval student logs mean R@1 as its "accuracy" (per type: each direction's R@1); say so
        score = ("R@1 " if "r1" in test else "") + f"{100 * test['accuracy']:.2f}"
        rows.append(
            f"| `{meta_path.parent.name}` | {meta['dataset']} | {meta['kind']} | {score} "
            f"(n={test['n']}) | {per_type} | {meta.get('steps', '?')} steps x {cfg.get('batch_size', '?')}, "
            f"{minutes:.1f} min | {size_mb:.1f} MB |"
        )
    head = (
        "| checkpoint | data | model | test accuracy % | per question type (test, %) | training on this CPU | size |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def read_section(text: str, name: str) -> str:
    """The text between a markdown file's `<!-- NAME:start -->` and `<!-- NAME:end -->` markers."""
    return text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0].strip()


def replace_section(readme: str | Path, name: str, body: str) -> bool:
    """Replace the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`; True if the file changed."""
    readme = Path(readme)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no {start} ... {end} section")
    new = pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)
    readme.write_text(new)
    return new != text


def update_readme(readme: str | Path, assets: str | Path) -> bool:
    """Write the shipped checkpoints' table into the results section of docs/results.md."""
    return replace_section(readme, "results", teacher_table(assets))
