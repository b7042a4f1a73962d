"""Retrieval results (the MCAD grid): {"teachers", "rows": {row: ...}, "checks", "earlier"} and its table: the
teachers, then each row (mean ± sample std over seeds) with size and speed, the earlier rows below a marked line
(runs of an earlier recipe, data or teacher), then the claims."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from workbench.experiments.grid import Grid
from workbench.experiments.measure import EARLIER_NOTE, RETRIEVAL_DIRECTIONS, flat_retrieval, merge_records, whys
from workbench.experiments.stats import bound, compare, note, slug


def rows_of(grid: Grid, document: dict) -> dict:
    """{(task, "test"): {row: {"runs"}}}: the rows' runs, then the earlier ones."""
    key = (grid.tasks[0], "test")
    return merge_records(*({key: (document or {}).get(part) or {}} for part in ("rows", "earlier")))


def teachers_eval_path(root: Path) -> Path:
    """The teachers' figures on the students' test gallery (written by the grid's prepare step)."""
    return Path(root) / "teachers" / "eval.json"


def document(
    grid: Grid, groups: dict, root: Path, assets: Path, previous: dict, prints: dict, earlier: dict | None = None
) -> dict:
    """The results file; runs of an earlier teacher or recipe (`earlier`) are kept under "earlier", out of the
    table and the checks, so re-collecting never loses them."""
    found = groups.get((grid.tasks[0], "test"), {})
    rows = {name: found[name] for name in grid.rows if name in found}  # table order
    path = teachers_eval_path(root)
    teachers = json.loads(path.read_text()) if path.exists() else previous.get("teachers", {})
    results = {"teachers": teachers, "rows": rows}
    results["checks"] = checks(grid, results)
    old = (earlier or {}).get((grid.tasks[0], "test"))
    if old:
        results["earlier"] = {name: old[name] for name in grid.rows if name in old}
    return results


def checks(grid: Grid, results: dict) -> dict:
    """The grid's claims, measured: the claim row beats the baseline on R@1 (`stats.claim`: Welch, at least 5
    seeds of each), and so does `a` over `b` for each `compare` pair; the student's size and R@1 as fractions of
    the dual teacher's; the fusion re-rank's gain."""
    rows, teacher, out = results["rows"], results["teachers"].get("dual"), {}
    c, name, base = grid.claims, grid.claims["row"], grid.baseline
    row = rows.get(name)
    # pending, naming the rows it waits for, while a row has no runs of today's recipe
    for a, b in ((name, base), *c.get("compare", {}).get(grid.tasks[0], ())):
        out[f"{slug(a)}_minus_{slug(b)}_{c['metric']}_points"] = compare(rows, a, b, lambda r: r[c["metric"]]["values"])
    if row and teacher:
        frac = row["runs"][0]["params"] / teacher["params"]
        out["student_params_fraction_of_teacher"] = {"value": round(frac, 3), "target": c["params_fraction"],
                                                     "met": frac <= c["params_fraction"]}  # fmt: skip
        if teacher["r1"]:  # each seed's share of the teacher's R@1 above the bound: a t-test over the seeds
            shares = [v / teacher["r1"] for v in row["r1"]["values"]]
            out["student_r1_fraction_of_teacher"] = bound(shares, c["r1_fraction"], side="above")
    fused = results["teachers"].get("dual+fusion")
    if teacher and fused:
        gain = 100 * (fused["r1"] - teacher["r1"])
        out["fusion_rerank_gain_r1_points"] = {"value": round(gain, 2), "met": gain > 0}
    return out


def _pct(summary: dict | float) -> str:
    if not isinstance(summary, dict):
        return f"{100 * summary:.1f}"
    if summary["std"] is None:
        return f"{100 * summary['mean']:.1f}"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def _rank(summary: dict | float) -> str:
    if not isinstance(summary, dict):
        return f"{summary:g}"
    if summary["std"] is None:
        return f"{summary['mean']:g}"
    return f"{summary['mean']:g} ± {summary['std']:.1f}"


def _cells(get) -> str:
    parts = [_pct(get("r1"))]
    for d in RETRIEVAL_DIRECTIONS:
        parts += [_pct(get(f"{d} R@1")), _pct(get(f"{d} R@5")), _pct(get(f"{d} R@10")), _rank(get(f"{d} median_rank"))]
    return " | ".join(parts)


def _teacher_lines(teachers: dict) -> list[str]:
    lines = []
    if teachers.get("dual"):
        d = teachers["dual"]
        q = d.get("query_ms", {}).get("total")
        lines.append(
            f"| teacher: dual (`clip`) | | {_cells(flat_retrieval(d).get)} | {d['params'] / 1e6:.2f} "
            f"| {d['index']['seconds']:.2f} | {'' if q is None else f'{q:.2f}'} | {d.get('minutes', '')} |"
        )
    if teachers.get("dual+fusion"):
        f = teachers["dual+fusion"]
        lines.append(f"| teacher: dual + fusion re-rank (top {f['k']}) | | {_cells(flat_retrieval(f).get)} | | | | |")
    return lines


def _claims_note(checks_: dict) -> str:
    return "Targets: " + "; ".join(note(k, v) for k, v in checks_.items()) + "."


def _student_line(label: str, row: dict) -> str:
    runs = row["runs"]
    q = [r["query_ms"] for r in runs if r["query_ms"] is not None]
    return (
        f"| {label} | {len(runs)} | {_cells(row.get)} | {runs[0]['params'] / 1e6:.2f} "
        f"| {statistics.fmean(r['index_s'] for r in runs):.2f} | {f'{statistics.fmean(q):.2f}' if q else ''} "
        f"| {statistics.fmean(r['minutes'] for r in runs):.1f} |"
    )


def table(grid: Grid, results: dict) -> str:
    """Markdown: the teachers, then each row (mean ± std over seeds), with size and speed; then the checks."""
    head = (
        "| model | seeds | R@1 | i2t R@1 | i2t R@5 | i2t R@10 | i2t MedR | t2i R@1 | t2i R@5 | t2i R@10 | t2i MedR "
        "| params (M) | index (s) | query (ms) | train (min) |"
    )
    t = results["teachers"]
    lines = [head, "|" + "---|" * 15, *_teacher_lines(t)]
    n_images = t["dual"]["n_images"] if t.get("dual") else None
    for name, row in results["rows"].items():
        n_images = n_images or row["runs"][0]["n_images"]
        lines.append(_student_line(f"student `{name}`", row))
    earlier = results.get("earlier") or {}
    if earlier:
        lines.append(f"| {EARLIER_NOTE} |" + " |" * 14)
        lines += [_student_line(f"`{name}` ({whys(row)})", row) for name, row in earlier.items()]
    if len(lines) == 2:
        return "(no finished runs yet)"
    notes = [
        f"\nTest gallery: {n_images} shapes scenes ({grid.tasks[0]}: groups of a scene and three one-attribute "
        "variants), one caption each. R@1 = mean of image->text and text->image "
        "R@1; mean ± sample std over seeds. Index: embedding the whole gallery once; query: one caption encoded "
        "and searched (batch 1, median)."
    ]
    itm = t.get("fusion_itm")
    if itm and itm.get("accuracy") is not None:
        per = ", ".join(f"{q} {100 * v:.1f}" for q, v in itm["per_type"].items())
        notes.append(
            f"Fusion teacher (image-text matching; negatives: one-attribute swaps, other and partial scenes): "
            f"{100 * itm['accuracy']:.1f}% ({per})."
        )
    if results.get("checks"):
        notes.append(_claims_note(results["checks"]))
    return "\n".join(lines) + "\n" + "\n".join(notes)
