"""Tables of measured results, made from the shipped checkpoints' own `workbench.json` (never typed by hand)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from workbench.train.stages import whole_run_seconds


def teacher_table(assets: str | Path) -> str:
    """Markdown: one row per shipped checkpoint, accuracy overall and per question type, and on the held-out
    wordings (`reworded_accuracy`) where measured."""
    rows, reworded = [], reworded_accuracy(assets)
    for meta_path in sorted(Path(assets).glob("*/workbench.json")):
        meta = json.loads(meta_path.read_text())
        size_mb = sum(p.stat().st_size for p in meta_path.parent.iterdir()) / 2**20
        if meta.get("kind") == "mae":  # MAD's vision teacher: images only, no task, measured by reconstruction
            s = meta["settings"]
            rows.append(
                f"| `{meta_path.parent.name}` | shapes images | mae | - | - | "
                f"masked-patch MSE {meta['final_loss']:.3f} | "
                f"{meta['steps']} steps x {s['batch_size']}, {meta['train_seconds'] / 60:.1f} min | {size_mb:.1f} MB |"
            )
            continue
        test = meta["metrics"]["test"]
        cfg = meta.get("train_config", {})
        per_type = ", ".join(f"{q} {100 * m['accuracy']:.1f}" for q, m in test["per_type"].items())
        # a run in stages (dide-pt: its matching stage, then the task) counts whole; the steps are the last stage's
        minutes = whole_run_seconds(meta) / 60
        after = " after an earlier stage" if "earlier_stage_seconds" in meta else ""
        # a retrieval student logs mean R@1 as its "accuracy" (per type: each direction's R@1); say so
        score = ("R@1 " if "r1" in test else "") + f"{100 * test['accuracy']:.2f}"
        held_out = reworded.get(meta_path.parent.name)
        held_out = f"{100 * held_out[0]:.2f} (n={held_out[1]})" if held_out else "-"
        rows.append(
            f"| `{meta_path.parent.name}` | {meta['dataset']} | {meta['kind']} | {score} "
            f"(n={test['n']}) | {held_out} | {per_type} | {meta.get('steps', '?')} steps x "
            f"{cfg.get('batch_size', '?')}{after}, {minutes:.1f} min{' in all' if after else ''} | {size_mb:.1f} MB |"
        )
    head = (
        "| checkpoint | data | model | test accuracy % | held-out wordings % | per question type (test, %) | "
        "training on this CPU | size |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def reworded_accuracy(assets: str | Path) -> dict[str, tuple[float, int]]:
    """{checkpoint: (accuracy, n)} on the held-out wordings (split test-paraphrase), from
    ASSETS/results/paraphrase.json (`workbench paraphrase-results`), for the checkpoints whose weights it
    measured: a checkpoint rebuilt since then gets none until it is measured again."""
    from workbench.models.io import weights_fingerprint

    path = Path(assets) / "results" / "paraphrase.json"
    if not path.is_file():
        return {}
    out = {}
    for row in json.loads(path.read_text()).get("checkpoints", []):
        folder = Path(assets) / row["checkpoint"]
        if folder.is_dir() and row.get("fingerprint") == weights_fingerprint(folder):
            out[row["checkpoint"]] = (row["test-paraphrase"]["accuracy"], row["test-paraphrase"]["n"])
    return out


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
