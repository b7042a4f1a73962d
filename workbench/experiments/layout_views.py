"""Results per task and view (the MAD grid): {"protocol", "results": {task: {view: {row: ...}}}, "checks"},
and its table: one per task, the views as row groups, every row of the grid ("not run" where none finished),
then the claim: the grid's row minus the baseline, overall, at the decisive view and at every view."""

from __future__ import annotations

import statistics
from pathlib import Path

from workbench.experiments.grid import Grid
from workbench.experiments.measure import merge_records
from workbench.experiments.stats import ALPHA, MIN_SEEDS, compare, format_test, p_text, verdict

RULE = f"with Welch p < {ALPHA} over {MIN_SEEDS}+ seeds of each"
LEGACY_RULE = "by more than the seed spread"  # results files from before the Welch test


def rows_of(grid: Grid, document: dict) -> dict:
    """{(task, view): {row: {"runs"}}}: the results' runs, then the earlier ones."""

    def flat(part: str) -> dict:
        tasks = (document or {}).get(part) or {}
        return {(task, view): rows for task, views in tasks.items() for view, rows in views.items()}

    return merge_records(flat("results"), flat("earlier"))


def document(
    grid: Grid, groups: dict, root: Path, assets: Path, previous: dict, prints: dict, earlier: dict | None = None
) -> dict:
    """The results file; runs of an earlier teacher or recipe (`earlier`) are kept under "earlier", out of the
    table and the checks, so re-collecting never loses them."""
    results = _by_task(grid, groups)
    out = {"protocol": protocol(grid), "results": results, "checks": checks(grid, results)}
    if earlier:
        out["earlier"] = _by_task(grid, earlier)
    return out


def _by_task(grid: Grid, groups: dict) -> dict:
    results: dict = {}
    for (task, view), rows in groups.items():
        results.setdefault(task, {})[view] = rows
    return {task: {v: views[v] for v in grid.views if v in views} for task, views in results.items()}


def protocol(grid: Grid) -> dict:
    """The grid's settings as data, for the results file."""
    return {
        "tasks": list(grid.tasks),
        "rows": {name: spec["label"] for name, spec in grid.rows.items()},
        "seeds": list(grid.seeds),
        "settings": {s: {**b, "extra_splits": list(grid.extra_splits(s))} for s, b in grid.settings.items()},
        "views": {v: dict(spec) for v, spec in grid.views.items()},
        "teachers": dict(grid.teacher_notes),
    }


def _margin(grid: Grid, rows: dict) -> dict:
    """The claim row minus the baseline (overall accuracy, points) on one view's rows (`stats.claim`)."""
    return compare(rows, grid.claims["row"], grid.baseline, lambda row: row["accuracy"]["values"])


def checks(grid: Grid, results: dict) -> dict:
    """Per task, the margin at the decisive view (the acceptance) and at every view; "any_task": met if met
    on at least one task, not met once every task is decided and none is met."""
    name, base, decisive = grid.claims["row"], grid.baseline, grid.claims["decisive_view"]
    per_view = {
        task: {v: _margin(grid, (results.get(task) or {}).get(v) or {}) for v in grid.views} for task in grid.tasks
    }
    at_decisive = {task: per_view[task][decisive] for task in grid.tasks}
    decided = [c["met"] for c in at_decisive.values()]
    any_met = True if any(decided) else (False if decided and None not in decided else None)
    return {
        f"{name}_minus_{base}_{decisive}_points": at_decisive,
        "any_task": any_met,
        f"{name}_minus_{base}_points": per_view,
        "rule": RULE,
    }


def _fmt(summary: dict) -> str:
    mean = 100 * summary["mean"]
    return f"{mean:.1f}" if summary.get("std") is None else f"{mean:.1f} ± {100 * summary['std']:.1f}"


def margins_line(checks_: dict, task: str, key: str = "mad_minus_none_points") -> str:
    """ "low1 +3.36 (5 seeds each, Welch p = 0.006: met), low10 +14.82 (3 seeds each, Welch p = 0.049: pending
    (needs 5+ seeds of each)), ..." (`mad` and `none` seeds) for one
    task from a results file's "checks" (`key`: its margins per view): does the gain shrink as pairs grow? Each
    margin carries its verdict, so a small p-value over too few seeds does not read as a result. The table in
    docs/results.md and notebook 05 print it."""
    parts = []
    for view, c in checks_[key][task].items():
        if c["value"] is None:
            parts.append(f"{view} not run")
            continue
        p = f"Welch p {p_text(c['p_value'])}" if c.get("p_value") is not None else ""
        said = ", ".join(x for x in (_seeds_text(c.get("seeds")), p) if x)
        parts.append(f"{view} {c['value']:+.2f} ({said + ': ' if said else ''}{verdict(c).removeprefix(' — ')})")
    return ", ".join(parts)


def _row_lines(grid: Grid, rows: dict, qtypes: list[str]) -> list[str]:
    lines = []
    for name in grid.rows:
        row = rows.get(name)
        if row is None:
            lines.append(f"| `{name}` | 0 | not run |" + " |" * (len(qtypes) + 1))
            continue
        overall = _fmt(row["accuracy"])
        if "in_domain" in row:
            overall += f" (in-domain {_fmt(row['in_domain'])})"
        cells = "".join(f" {_fmt(row['per_type'][q]) if q in row['per_type'] else ''} |" for q in qtypes)
        minutes = statistics.fmean(r["minutes"] for r in row["runs"])
        lines.append(f"| `{name}` | {len(row['runs'])} | {overall} |{cells} {minutes:.1f} |")
    return lines


def _claim_note(c: dict) -> str:
    """ "+3.36 points (5 seeds each; Welch p = 0.006, 95% CI ...) — met": the margin, the test, the shared verdict
    wording (`stats.verdict`)."""
    if c["value"] is None:
        return c["status"]
    test = format_test(c)
    said = "; ".join(x for x in (_seeds_text(c.get("seeds")), test) if x)
    return f"{c['value']:+.2f} points{f' ({said})' if said else ''}{verdict(c)}"


def _seeds_text(seeds: list[int] | None) -> str:
    """ "5 seeds each", "one seed each", "3 and 5 seeds"; "" for a results file from before seeds were kept."""
    if not seeds:
        return ""
    a, b = seeds
    return "one seed each" if a == b == 1 else f"{a} seeds each" if a == b else f"{a} and {b} seeds"


def table(grid: Grid, doc: dict) -> str:
    """Markdown, one table per task (mean ± sample std over seeds, test accuracy %), then the claims."""
    results, measured = doc.get("results") or {}, doc.get("checks") or checks(grid, {})
    name, base, decisive = grid.claims["row"], grid.baseline, grid.claims["decisive_view"]
    blocks = []
    for task in grid.tasks:
        entry = results.get(task) or {}
        qtypes = sorted({q for rows in entry.values() for row in rows.values() for q in row["per_type"]})
        lines = [
            f"| {task} | seeds | overall | " + " | ".join(qtypes) + (" | " if qtypes else "") + "minutes |",
            "|" + "---|" * (len(qtypes) + 4),
        ]
        for view, spec in grid.views.items():
            lines.append(f"| **{view}**: {spec['what']} |" + " |" * (len(qtypes) + 3))
            lines += _row_lines(grid, entry.get(view) or {}, qtypes)
        note = _claim_note(measured[f"{name}_minus_{base}_{decisive}_points"][task])
        lines.append(f"\nMAD minus none at 1% ({task}, overall): {note}.")
        margins = margins_line(measured, task, f"{name}_minus_{base}_points")
        lines.append(f"MAD minus none per setting ({task}, overall, points): {margins}.")
        blocks.append("\n".join(lines))
    accepted = {True: "met", False: "NOT met", None: "pending"}[measured["any_task"]]
    blocks.append(
        f"Acceptance (MAD beats none at 1% {measured.get('rule', LEGACY_RULE)} on at least one task): {accepted}. "
        "Test accuracy %, mean ± sample std over seeds; `shift`: the `full` runs on the compositional split "
        "(their in-domain test in brackets)."
    )
    return "\n\n".join(blocks)
