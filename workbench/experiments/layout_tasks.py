"""Results per task (the DiDE grid): {task: {"teacher", "rows": {row: ...}, "checks"}} and its table, the
teacher then each row, overall and per question type (mean ± sample std over seeds)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from workbench.experiments.grid import Grid
from workbench.experiments.measure import EARLIER_NOTE, merge_records, whys
from workbench.experiments.stats import bound, claim, compare, no_runs, note, slug

PARTS = ("rows", "earlier")  # a task entry's current runs, then those of an earlier teacher or recipe


def rows_of(grid: Grid, document: dict) -> dict:
    """{(task, "test"): {row: {"runs": ...}}}: each row's current runs, then its earlier ones."""
    entries = (document or {}).items()
    return merge_records(*({(task, "test"): entry.get(part, {}) for task, entry in entries} for part in PARTS))


def document(
    grid: Grid, groups: dict, root: Path, assets: Path, previous: dict, prints: dict, earlier: dict | None = None
) -> dict:
    """{task: {"teacher", "rows", "checks"}} in run order, plus "earlier": the rows of runs that learned from a
    since-rebuilt teacher or to an earlier recipe, kept for reference (no check reads them)."""
    results: dict = {}
    earlier = earlier or {}
    for task in dict.fromkeys(t for t, _view in (*groups, *earlier)):
        entry = {"teacher": teacher(grid, task, root, assets, prints.get(task)), "rows": groups.get((task, "test"), {})}
        entry["checks"] = checks(grid, task, entry)
        if earlier.get((task, "test")):
            entry["earlier"] = earlier[(task, "test")]
        results[task] = entry
    return results


def teacher(grid: Grid, task: str, root: Path, assets: Path, fingerprint: str | None) -> dict | None:
    """The teacher's test figures (from its checkpoint folder, the grid's `teacher` path)."""
    folder = grid.paths["teacher"].replace("{task}", task).format(root=root, assets=assets)
    path = Path(folder) / "workbench.json"
    if not path.exists():
        return None
    test = json.loads(path.read_text())["metrics"]["test"]
    return {
        "accuracy": test["accuracy"],
        "per_type": {q: m["accuracy"] for q, m in test["per_type"].items()},
        "fingerprint": fingerprint,
    }


def checks(grid: Grid, task: str, entry: dict) -> dict:
    """The grid's claims, measured: the row within `gap_to_teacher_points` of the teacher; the row beats the
    baseline on each listed question type; each `compare` pair (a, b): a beats b overall (`stats.claim`: Welch,
    at least 5 seeds of each)."""
    rows, teacher_figures, out = entry["rows"], entry["teacher"], {}
    name, base, claims = grid.claims["row"], grid.baseline, grid.claims
    if name in rows and teacher_figures:  # within the bound of its teacher: a t-test over the seeds' gaps
        gaps = [100 * (teacher_figures["accuracy"] - v) for v in rows[name]["accuracy"]["values"]]
        out[f"{name}_gap_to_teacher_points"] = bound(gaps, claims["gap_to_teacher_points"], side="below")
    elif name not in rows:
        out[f"{name}_gap_to_teacher_points"] = no_runs([name])
    # a claim the grid makes stays in view, pending, while a row it compares has no runs of today's recipe
    missing = [r for r in (name, base) if r not in rows]
    for q in claims["per_type"].get(task, ()):
        if missing:
            out[f"{name}_minus_{base}_{q}_points"] = no_runs(missing)
        elif (a := rows[name]["per_type"].get(q)) is not None and (b := rows[base]["per_type"].get(q)) is not None:
            out[f"{name}_minus_{base}_{q}_points"] = claim(a["values"], b["values"])
    for a, b in claims.get("compare", {}).get(task, ()):
        out[f"{slug(a)}_minus_{slug(b)}_points"] = compare(rows, a, b, lambda row: row["accuracy"]["values"])
    return out


def _fmt(summary: dict) -> str:
    mean = 100 * summary["mean"]
    return f"{mean:.1f}" if summary.get("std") is None else f"{mean:.1f} ± {100 * summary['std']:.1f}"


def table(grid: Grid, results: dict) -> str:
    """Markdown: per task, the teacher then each row, overall and per question type; then the rows of earlier
    teachers or recipes, marked; then the claims."""
    blocks = []
    for task, entry in results.items():
        earlier = entry.get("earlier", {})
        qtypes = sorted({q for row in (*entry["rows"].values(), *earlier.values()) for q in row["per_type"]})
        lines = [
            f"| {task} | seeds | overall | " + " | ".join(qtypes) + " | minutes |",
            "|" + "---|" * (len(qtypes) + 4),
        ]
        if entry["teacher"]:
            t = entry["teacher"]
            cells = " | ".join(f"{100 * t['per_type'][q]:.1f}" if q in t["per_type"] else "" for q in qtypes)
            lines.append(f"| teacher (fusion) | | {100 * t['accuracy']:.1f} | {cells} | |")
        lines += [_row_line(f"student `{variant}`", row, qtypes) for variant, row in entry["rows"].items()]
        if earlier:
            lines.append(f"| {EARLIER_NOTE} |{' |' * (len(qtypes) + 3)}")
            lines += [_row_line(f"`{variant}` ({whys(row)})", row, qtypes) for variant, row in earlier.items()]
        if entry.get("checks"):
            notes = "; ".join(note(k, v) for k, v in entry["checks"].items())
            lines.append(f"\nTargets ({task}): {notes}.")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "(no finished runs yet)"


def _row_line(label: str, row: dict, qtypes: list[str]) -> str:
    cells = " | ".join(_fmt(row["per_type"][q]) if q in row["per_type"] else "" for q in qtypes)
    minutes = statistics.fmean(r["minutes"] for r in row["runs"])
    return f"| {label} | {len(row['runs'])} | {_fmt(row['accuracy'])} | {cells} | {minutes:.1f} |"
