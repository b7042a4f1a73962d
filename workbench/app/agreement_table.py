"""The Attention tab's measured agreement: how closely each shipped student's maps follow the teacher's, read from
assets/results/agreement.json (`workbench explain-results`) when the page is built, nothing run. One row per map
(the distilled virtual cross-attention first, marked as the quantity `dide`'s loss trains; then the functional
maps), one column per student (mean Spearman ρ against the teacher), one per paired comparison in the file (the
paired t-test's p-value of the per-example ρ). Every figure comes from the file; a missing or malformed file gives
one line saying so."""

from __future__ import annotations

import math
from pathlib import Path

from workbench.explain.agreement import read_agreement
from workbench.explain.results import AGREEMENT_LABELS, AGREEMENT_MAPS, TRAINED_MAP, agreement_summary, map_entry

TITLE = "How closely each student's maps follow the teacher's"
TRAINED_MARK = "†"
TRAINED_NOTE = (
    f"{TRAINED_MARK} The row that measures the quantity the `dide` loss trains: the student's virtual "
    "cross-attention (its text-tower queries against its image-tower keys), which takes no part in the student's "
    "answer, so high agreement there is the training objective read back, not evidence of where the student looks. "
    "Rollout, relevancy and Integrated Gradients are maps of what the students compute to answer."
)


def _rho(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _p_value(p) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _map_label(method: str) -> str:
    label = AGREEMENT_LABELS.get(method, method)
    return f"{label} {TRAINED_MARK}" if method == TRAINED_MAP else label


def agreement_overview(results: dict) -> str:
    """Markdown of an agreement file's dict (`read_agreement`): the table (map x student mean Spearman ρ, and the
    paired p-values), what it shows and which row is the trained quantity."""
    s = results.get("settings") or {}
    maps = list(s.get("maps") or AGREEMENT_MAPS)
    students, paired = list(results["students"]), results.get("paired") or {}
    header = ["map (teacher vs student)", *(f"ρ `{name}`" for name in students), *(f"p, `{k}`" for k in paired)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method in maps:
        summary = agreement_summary(results, method)
        cells = [_rho(summary[name].get("spearman")) if name in summary else "n/a" for name in students]
        for pair in paired.values():
            entry = map_entry(pair, method)
            cells.append(_p_value(entry.get("spearman_p_value")) if entry else "n/a")
        lines.append(f"| {_map_label(method)} | " + " | ".join(cells) + " |")
    examples = " ".join(str(x) for x in (s.get("n"), results.get("dataset"), results.get("split")) if x)
    intro = (
        f"Spearman ρ of each student's map against the teacher's (`{results.get('teacher', 'teacher')}`), mean over "
        f"the first {examples} examples (1: the same order of the patches); p: two-sided paired t-test of the "
        "per-example ρ of the two students named. KL and the figures per question type: docs/results.md."
    )
    return "\n".join([intro, "", *lines, "", TRAINED_NOTE])


def agreement_section(path: str | Path | None = None) -> tuple[str, str]:
    """(the accordion's label, its Markdown) for the agreement file `path` (default: the shipped one,
    `<assets>/results/agreement.json`); a missing or malformed file: one line saying so."""
    from workbench.api import assets_dir

    path = Path(path) if path else assets_dir() / "results" / "agreement.json"
    try:
        results = read_agreement(path)
        text = agreement_overview(results)
    except FileNotFoundError:
        return TITLE, f"No measured agreement to show: {path} is missing (`workbench explain-results` writes it)."
    except OSError as e:
        return TITLE, f"The measured agreement could not be read from {path} ({e.strerror or e})."
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return TITLE, f"The measured agreement could not be read: {path} is malformed ({e})."
    n, split = (results.get("settings") or {}).get("n"), results.get("split") or "test"
    return (f"{TITLE} ({n} {split} examples)" if isinstance(n, int) else TITLE), text
