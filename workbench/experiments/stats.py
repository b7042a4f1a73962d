"""Statistics over seeds: mean and sample std of a row, and a row against its baseline (Welch's t-test).

A claim ("X beats Y") is met only with at least `MIN_SEEDS` seeds of each row and a two-sided Welch t-test
p-value below `ALPHA` with the difference in the stated direction; with fewer seeds it is pending, whatever
the margin. The figures come from `scipy.stats.ttest_ind(equal_var=False)` (Welch-Satterthwaite degrees of
freedom; the 95% confidence interval of the difference of the means from the same t distribution).
"""

from __future__ import annotations

import math
import re
import statistics

MIN_SEEDS = 5
ALPHA = 0.05


def summary(values: list[float]) -> dict:
    """{"mean", "std" (sample std, n - 1; None for one value), "values"}."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def welch(a: list[float], b: list[float]) -> dict | None:
    """mean(a) - mean(b) with its 95% confidence interval and the two-sided Welch t-test p-value; None when it
    is undefined (fewer than 2 values on a side, or no variance on either)."""
    if len(a) < 2 or len(b) < 2 or statistics.variance(a) + statistics.variance(b) == 0:
        return None
    from scipy import stats

    test = stats.ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(0.95)
    if not all(math.isfinite(x) for x in (test.pvalue, ci.low, ci.high)):
        return None
    return {
        "difference": statistics.fmean(a) - statistics.fmean(b),
        "ci95": [float(ci.low), float(ci.high)],
        "p_value": float(test.pvalue),
        "df": float(test.df),
    }


def versus(a: list[float], b: list[float], baseline: str, metric: str) -> dict:
    """A row's figures against its baseline's (the `vs_baseline` field of a results row; metric units)."""
    test = welch(a, b) or {}
    return {
        "baseline": baseline,
        "metric": metric,
        "difference": statistics.fmean(a) - statistics.fmean(b),
        "ci95": test.get("ci95"),
        "p_value": test.get("p_value"),
    }


def stored_p(p: float) -> float:
    """A p-value as the results files keep it: 6 decimals, or 3 significant digits below 0.001 (6 decimals would
    keep one digit of 4e-06 and store a p below 5e-7 as 0.0)."""
    return float(f"{p:.3g}") if p < 1e-3 else round(p, 6)


def claim(a: list[float], b: list[float], scale: float = 100.0, direction: int = 1) -> dict:
    """The claim "a beats b" (`direction` 1; -1: a is lower), in points (`scale` x the metric):

    value (the margin), spread (the old rule's std(a) + std(b), kept for reading), p_value and ci95 (Welch),
    seeds (of each), met (True / False; None while either row has fewer than MIN_SEEDS seeds), status."""
    margin = scale * (statistics.fmean(a) - statistics.fmean(b))
    spread = scale * (statistics.stdev(a) + statistics.stdev(b)) if len(a) > 1 and len(b) > 1 else None
    test = welch(a, b)
    enough = min(len(a), len(b)) >= MIN_SEEDS
    met = None if not enough or test is None else bool(test["p_value"] < ALPHA and direction * margin > 0)
    return {
        "value": round(margin, 2),
        "spread": None if spread is None else round(spread, 2),
        "p_value": None if test is None else stored_p(test["p_value"]),
        "ci95": None if test is None else [round(scale * x, 2) for x in test["ci95"]],
        "seeds": [len(a), len(b)],
        "met": met,
        "status": status(met, enough),
    }


def slug(row: str) -> str:
    """A row's name as part of a check's key: "dide (4,000 steps)" -> "dide-4000-steps" ("dide-pt" stays)."""
    return re.sub(r"[^\w-]+", "-", row.replace(",", "")).strip("-")


def no_runs(rows: list[str]) -> dict:
    """A claim the grid makes whose `rows` have no runs of today's recipe yet (their runs are earlier ones, or
    none at all): pending, shown so rather than left out of the results."""
    names = ", ".join(f"`{r}`" for r in rows)
    return {
        "value": None,
        "p_value": None,
        "met": None,
        "missing": rows,
        "status": f"pending (no runs of {names} under today's recipe)",
    }


def compare(rows: dict, a: str, b: str, values) -> dict:
    """The claim "row `a` beats row `b`" on `values(row)` (`claim`), or `no_runs` naming whichever of the two has
    no runs of today's recipe (absent or empty in `rows`): the one rule every results layout applies."""
    missing = [r for r in (a, b) if not rows.get(r)]
    return no_runs(missing) if missing else claim(values(rows[a]), values(rows[b]))


def bound(values: list[float], target: float, side: str = "below") -> dict:
    """The claim "the mean of `values` is below `target`" (`side` "below"; or "above"), e.g. a student's gap to
    its teacher in points against a fixed 1.5: a one-sample t-test (`scipy.stats.ttest_1samp`), decided as `claim`
    decides a comparison: two-sided p < ALPHA with the mean on the claimed side, over at least MIN_SEEDS values.

    value (the mean), target, side, p_value, seeds, met (True / False; None with fewer than MIN_SEEDS values or
    an undefined test), status. Values without any variance (every seed at 100%) have no t-test: then every one
    of them is on the claimed side or not, and that decides (a `claim` between two such rows stays pending: there
    the question is a difference, here each value is compared with a fixed number)."""
    on_side = (lambda x: x < target) if side == "below" else (lambda x: x > target)
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    p_value = met = None
    if n >= MIN_SEEDS and statistics.variance(values) == 0:
        met = all(on_side(x) for x in values)
    elif n >= MIN_SEEDS:
        from scipy import stats

        p = float(stats.ttest_1samp(values, target).pvalue)
        if math.isfinite(p):
            p_value, met = p, bool(p < ALPHA and on_side(mean))
    return {
        "value": round(mean, 3) if values else None,
        "target": target,
        "side": side,
        "p_value": None if p_value is None else stored_p(p_value),
        "seeds": n,
        "met": met,
        "status": f"pending (needs {MIN_SEEDS}+ seeds)" if n < MIN_SEEDS else status(met, enough=True),
    }


def format_bound(check: dict) -> str:
    """ "t-test p = 0.012 over 5 seeds" for a `bound` check; the seed count alone without a test."""
    seeds = "1 seed" if check["seeds"] == 1 else f"{check['seeds']} seeds"
    if check.get("p_value") is None:
        return f"{seeds}, no t-test" + (" (no seed variance)" if check["met"] is not None else "")
    return f"t-test p {p_text(check['p_value'])} over {seeds}"


_TARGET_SIDE = {"below": "< ", "above": "> "}


def note(name: str, check: dict) -> str:
    """A check as the tables' "Targets" line reads it: name, value, the test, the target, the verdict."""
    if check.get("value") is None:  # `no_runs`: nothing measured yet
        return f"{name}{verdict(check)}"
    test = format_test(check)
    return (
        f"{name}: {check['value']}"
        + (f" (spread {check['spread']})" if check.get("spread") is not None else "")
        + (f" ({test})" if test else "")
        + (f" (target {_TARGET_SIDE.get(check.get('side'), '')}{check['target']})" if "target" in check else "")
        + (f" ({format_bound(check)})" if isinstance(check.get("seeds"), int) else "")
        + verdict(check)
    )


def status(met: bool | None, enough: bool = True) -> str:
    if met is None:
        return f"pending (needs {MIN_SEEDS}+ seeds of each)" if not enough else "pending (no seed variance)"
    return "met" if met else "not met"


def format_test(check: dict) -> str:
    """ "Welch p = 0.047, 95% CI +0.05 to +4.51" for a claim with a Welch test, "" without one."""
    if check.get("p_value") is None or "ci95" not in check:  # none, or a `bound` check's one-sample test
        return ""
    low, high = check["ci95"]
    return f"Welch p {p_text(check['p_value'])}, 95% CI {low:+.2f} to {high:+.2f}"


def p_text(p: float) -> str:
    """ "= 0.047", "< 0.001"."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def verdict(check: dict) -> str:
    """ " — met", " — NOT met", or pending with its reason: a check's own `status` when it has one (`claim`,
    `bound`); else from `met` (fixed targets; results files from before the Welch test, which said 2 seeds)."""
    if check.get("status"):
        return " — NOT met" if check["status"] == "not met" else f" — {check['status']}"
    pending = f" — pending (needs {MIN_SEEDS if 'p_value' in check else 2}+ seeds)"
    return {True: " — met", False: " — NOT met", None: pending}[check["met"]]
