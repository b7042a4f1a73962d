"""The measured explanation results behind docs/results.md (`workbench explain-results`).

* `measure_faithfulness`: deletion and insertion AUCs of every map method, and of random patch
  orders, on the first N test examples of a teacher's dataset (`faithfulness_over_split`), with the
  share of examples where a method's deletion AUC is below random's -> `faithfulness.json`.
* `measure_agreement`: teacher-student agreement (KL and Spearman, overall and per question type;
  `agreement_over_split`) for each named student of the text-to-image cross-attention (the student's
  virtual one: what DiDE distils, so its agreement is the training objective read back) and of the
  functional maps (rollout, relevancy, Integrated Gradients: from what each model computes to
  answer), and a paired comparison of the first student with the others per map -> `agreement.json`.
* `faithfulness_table` / `agreement_table`: the markdown docs/results.md shows, made from those files
  only, so a test can check docs/results.md against them.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from workbench.explain.grid import patch_size_of
from workbench.models.io import load_checkpoint, write_json_atomic

FORMAT_VERSION = 1
# every shipped shapes-vqa student: dide, its label-only baseline, the one-layer-text-tower dide student, and dide
# with its pre-training stage
DEFAULT_STUDENTS = {
    "dide": "assets/shapes-vqa-student",
    "none": "assets/shapes-vqa-student-none",
    "dide-fast": "assets/shapes-vqa-student-fast",
    "dide-pt": "assets/shapes-vqa-student-dide-pt",
}
METHOD_LABELS = {
    "attention": "raw attention (last layer, text-to-image)",
    "rollout": "attention rollout",
    "relevancy": "gradient-weighted relevancy",
    "ig": "Integrated Gradients",
}


def _clean(x):
    """JSON-safe floats: NaN and infinities become None."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _sem(values) -> float:
    """Standard error of the mean (NaNs left out)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def _machine() -> dict:
    from workbench.bench.measure import machine_info

    return machine_info(torch.get_num_threads(), torch.device("cpu"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _test_data(ck, size: int, seed: int, split: str = "test", dataset: str | None = None, data_root=None):
    """(dataset name, its first `size` examples of `split`, the checkpoint's collator). The dataset is the one the
    checkpoint was trained on unless `dataset` names another; a real one is read from `data_root` in the
    checkpoint's class order, its images as the checkpoint reads them (`Collator.for_checkpoint`)."""
    from workbench.data import Collator, is_real_dataset, load_dataset

    name = dataset or ck.meta.get("dataset")
    if name is None:
        raise ValueError(f"{ck.path} does not say which dataset it was trained on: give the dataset")
    if is_real_dataset(name):
        data = load_dataset(name, split, size, data_root=data_root, labels=ck.labels)
    else:
        data = load_dataset(name, split, size, seed=seed)
    return name, data, Collator.for_checkpoint(ck)


def measure_faithfulness(
    teacher: str | Path,
    size: int = 200,
    methods: tuple[str, ...] | None = None,
    baseline: str = "mean",
    ig_steps: int = 16,
    random_orders: int = 3,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
    data: dict | None = None,
    steps: int | str = "patch",
) -> dict:
    """Deletion / insertion AUCs of each method on the first `size` test examples (see module doc). `data`:
    {"dataset", "data_root", "split"} for another split or dataset than the checkpoint's test split (e.g. a real
    one read from disk). `steps`: the points of each curve; "patch" (one per patch) is how the shipped
    faithfulness.json was measured, so it stays the default here (`workbench explain` samples 10% steps)."""
    from workbench.explain.faithfulness import faithfulness_over_split
    from workbench.explain.maps import METHODS

    methods = tuple(methods or METHODS)
    ck = load_checkpoint(teacher, device="cpu")
    split = (data or {}).get("split") or "test"
    dataset, examples, collate = _test_data(ck, size, seed, **{**(data or {}), "split": split})
    start = time.perf_counter()
    res = faithfulness_over_split(
        ck.model, examples, collate, methods, limit=size, baseline=baseline, random_orders=random_orders,
        ig_steps=ig_steps, batch_size=batch_size, progress=progress, per_example=True, steps=steps,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    per = res.pop("per_example")
    for m in methods:
        for mode in ("deletion", "insertion"):
            res["methods"][m][f"{mode}_auc_sem"] = _sem(per["methods"][m][mode])
    for mode in ("deletion", "insertion"):
        res["random"][f"{mode}_auc_sem"] = _sem(per["random"][mode])
    return _clean(
        {
            "format_version": FORMAT_VERSION,
            "teacher": str(teacher),
            "kind": ck.meta["kind"],
            "dataset": dataset,
            "split": split,
            "target": "probability of the answer predicted on the intact image",
            "settings": {
                "n": res["n"],
                "baseline": baseline,
                "ig_steps": ig_steps,
                "random_orders": random_orders,
                "seed": seed,
                "seed_note": "seed of the test scenes; the random patch orders are seeded by the example index",
                "methods": list(methods),
                "patch_size": patch_size_of(ck.model),
                "curve_steps": res.pop("steps"),
            },
            "methods": res["methods"],
            "random": res["random"],
            "per_example": per,
            "seconds": seconds,
            "machine": _machine(),
            "created": _now(),
        }
    )


AGREEMENT_MAPS = ("attention", "rollout", "relevancy", "ig")  # the distilled map first, then the functional ones
TRAINED_MAP = "attention"  # the student's virtual cross-attention: what DiDE's loss minimises (circular evidence)
AGREEMENT_LABELS = {
    "attention": "virtual cross-attention (trained by `dide`)",
    "rollout": "attention rollout",
    "relevancy": "gradient-weighted relevancy",
    "ig": "Integrated Gradients",
}


def _agreement_entry(res: dict, seconds: float) -> dict:
    """One map's agreement for one student: overall (with standard errors), per type, per example, seconds."""
    rows = [{k: r[k] for k in ("index", "qtype", "kl", "spearman")} for r in res["per_example"]]
    overall = dict(res["overall"])
    overall["kl_sem"] = _sem([r["kl"] for r in rows])
    overall["spearman_sem"] = _sem([r["spearman"] for r in rows])
    return {"overall": overall, "per_type": res["per_type"], "per_example": rows, "seconds": seconds}


def _paired(a: list[dict], b: list[dict]) -> dict:
    """Example by example, student a minus student b: shares, mean differences with their standard errors, and the
    two-sided p-value of a paired t-test (`scipy.stats.ttest_1samp` of the differences against 0)."""
    kl_diff = np.array([x["kl"] - y["kl"] for x, y in zip(a, b)])
    sp_diff = np.array([_nan(x["spearman"]) - _nan(y["spearman"]) for x, y in zip(a, b)], dtype=np.float64)
    return {
        "kl_lower_share": float(np.mean(kl_diff < 0)),
        "kl_diff_mean": float(np.mean(kl_diff)),
        "kl_diff_sem": _sem(kl_diff),
        "kl_p_value": _paired_p(kl_diff),
        "spearman_higher_share": float(np.mean(sp_diff[np.isfinite(sp_diff)] > 0)),
        "spearman_diff_mean": float(np.nanmean(sp_diff)),
        "spearman_diff_sem": _sem(sp_diff),
        "spearman_p_value": _paired_p(sp_diff),
    }


def _paired_p(diff: np.ndarray) -> float:
    from scipy import stats

    diff = diff[np.isfinite(diff)]
    if len(diff) < 2 or not np.any(diff != diff[0]):
        return float("nan")
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def _p(p) -> str:
    if p is None:
        return ""
    return ", paired t-test p < 0.001" if p < 0.001 else f", paired t-test p = {p:.3f}"


def _nan(x) -> float:
    return float("nan") if x is None else x


def measure_agreement(
    teacher: str | Path,
    students: dict[str, str | Path],
    size: int = 200,
    layer: int = -1,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    data: dict | None = None,
    maps: tuple[str, ...] = AGREEMENT_MAPS,
    ig_steps: int = 16,
) -> dict:
    """Teacher-student agreement of each of `maps` for each named student (see module doc); `data` as
    `measure_faithfulness`'s. Both models read the teacher's pixels (a student of a HF ViLT teacher reads
    images as it does). Each student's top-level "overall" / "per_type" / "per_example" are the virtual
    cross-attention's (the distilled map); "maps" holds every measured map's, "attention" included."""
    from workbench.explain.agreement import agreement_over_split

    ck = load_checkpoint(teacher, device="cpu")
    split = (data or {}).get("split") or "test"
    dataset, examples, collate = _test_data(ck, size, seed, **{**(data or {}), "split": split})
    out = {}
    for name, path in students.items():
        st = load_checkpoint(path, device="cpu")
        measured = {}
        for method in maps:
            start = time.perf_counter()
            res = agreement_over_split(
                ck.model, st.model, examples, collate, method=method, layer=layer, limit=size, batch_size=batch_size,
                progress=progress, ig_steps=ig_steps,
            )  # fmt: skip
            measured[method] = _agreement_entry(res, time.perf_counter() - start)
        first = measured[maps[0]]
        out[name] = {
            "checkpoint": str(path),
            "recipe": st.meta.get("recipe"),
            "test_accuracy": st.meta.get("metrics", {}).get("test", {}).get("accuracy"),
            **{k: first[k] for k in ("overall", "per_type", "per_example")},
            "maps": measured,
            "seconds": sum(m["seconds"] for m in measured.values()),
        }
    names = list(out)
    paired = {}
    for other in names[1:]:
        a, b = out[names[0]]["maps"], out[other]["maps"]
        entry = _paired(a[maps[0]]["per_example"], b[maps[0]]["per_example"])
        entry["maps"] = {m: _paired(a[m]["per_example"], b[m]["per_example"]) for m in maps}
        paired[f"{names[0]} vs {other}"] = entry
    return _clean(
        {
            "format_version": FORMAT_VERSION,
            "teacher": str(teacher),
            "dataset": dataset,
            "split": split,
            "settings": {
                "n": min(size, len(examples)),
                "method": maps[0],
                "maps": list(maps),
                "layer": layer,
                "seed": seed,
                "ig_steps": ig_steps,
                "attention": "per question word, heads averaged, renormalised over the patches; "
                "KL(teacher || student) and Spearman averaged over the words",
                "functional": "rollout, relevancy and IG: one image map per example (relevancy and IG of each "
                "model's own predicted answer); KL of IG on its positive part",
            },
            "students": out,
            "paired": paired,
            "seconds": sum(s["seconds"] for s in out.values()),
            "machine": _machine(),
            "created": _now(),
        }
    )


def write_results(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, results)
    return path


def _pm(mean, sem, digits: int = 3) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {sem:.{digits}f}" if sem is not None else f"{mean:.{digits}f}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _steps_note(steps) -> str:
    """How the curves were sampled, for the table's note: nothing for one point per patch (the shipped results),
    else the step."""
    return "" if steps == "patch" else f" {100 / int(steps):g}% of the patches at a time"


def faithfulness_table(results: dict) -> str:
    """Markdown: deletion / insertion AUC per method and for random order (mean ± standard error)."""
    s, rand = results["settings"], results["random"]
    lines = [
        "| map | deletion AUC (lower = more faithful) | insertion AUC (higher = more faithful) "
        "| examples with deletion AUC below random |",
        "|---|---:|---:|---:|",
    ]
    for m, r in results["methods"].items():
        beats = r.get("deletion_beats_random")
        lines.append(
            f"| {METHOD_LABELS.get(m, m)} | {_pm(r['deletion_auc'], r.get('deletion_auc_sem'))} "
            f"| {_pm(r['insertion_auc'], r.get('insertion_auc_sem'))} "
            f"| {'n/a' if beats is None else f'{100 * beats:.0f}%'} |"
        )
    lines.append(
        f"| random order (mean of {s['random_orders']}) | {_pm(rand['deletion_auc'], rand.get('deletion_auc_sem'))} "
        f"| {_pm(rand['insertion_auc'], rand.get('insertion_auc_sem'))} | |"
    )
    m = results["machine"]
    lines += [
        "",
        f"`{results['teacher']}` on the first {s['n']} {results['dataset']} {results['split']} examples "
        f"(scene seed {s['seed']}): probability of the predicted answer as "
        f"{s.get('patch_size', '?')}-pixel patches are replaced{_steps_note(s.get('curve_steps', 'patch'))} by the "
        f"{s['baseline']} colour, most relevant first (deletion) or put back on a {s['baseline']} image (insertion); "
        f"mean ± standard error over examples; IG with {s['ig_steps']} steps. "
        f"{_minutes(results['seconds'])} on {m['cpu']} ({m['threads']} thread(s)), {results['created'][:10]}.",
    ]
    return "\n".join(lines)


def map_entry(holder: dict, method: str) -> dict | None:
    """One map's figures in a student or paired entry (files from before "maps" hold the attention's only)."""
    return (holder.get("maps") or {}).get(method) or (holder if method == "attention" else None)


def agreement_summary(results: dict, method: str) -> dict[str, dict]:
    """{student: its overall figures ("kl", "spearman", their "_sem"s, "n") on `method`'s map} from an
    agreement.json, for a view beside one example's maps. `method == TRAINED_MAP` is what `dide` minimises."""
    return {name: e["overall"] for name, st in results["students"].items() if (e := map_entry(st, method))}


def agreement_table(results: dict) -> str:
    """Markdown: KL and Spearman of each map of each student against the teacher's, overall and per question
    type (the distilled virtual cross-attention first, then the functional maps), the paired comparison of the
    first student with the others per map, and which row measures what."""
    students, s, m = results["students"], results["settings"], results["machine"]
    maps = s.get("maps") or ["attention"]
    qtypes = sorted({q for st in students.values() for q in st["per_type"]})
    lines = [
        "| map (teacher vs student) | student | recipe | test acc. % | KL (lower = closer) "
        "| Spearman (higher = closer) | " + " | ".join(f"{q}: KL / ρ" for q in qtypes) + " |",
        "|---|---|---|---:|---:|---:|" + "---:|" * len(qtypes),
    ]
    for method in maps:
        for name, st in students.items():
            entry = map_entry(st, method)
            if entry is None:
                continue
            o, acc = entry["overall"], st.get("test_accuracy")
            cells = [
                "" if (t := entry["per_type"].get(q)) is None else f"{t['kl']:.3f} / {t['spearman']:.3f}"
                for q in qtypes
            ]
            lines.append(
                f"| {AGREEMENT_LABELS.get(method, method)} | `{name}` | {st.get('recipe') or ''} "
                f"| {'' if acc is None else f'{100 * acc:.1f}'} "
                f"| {_pm(o['kl'], o.get('kl_sem'))} | {_pm(o['spearman'], o.get('spearman_sem'))} | "
                + " | ".join(cells)
                + " |"
            )
    lines.append("")
    for pair, p in results.get("paired", {}).items():
        for method in maps:
            if (pm := map_entry(p, method)) is None:
                continue
            lines.append(
                f"Paired, `{pair}`, {AGREEMENT_LABELS.get(method, method)}: lower KL on "
                f"{100 * pm['kl_lower_share']:.0f}% of examples (mean difference "
                f"{_pm(pm['kl_diff_mean'], pm['kl_diff_sem'])}{_p(pm.get('kl_p_value'))}), higher Spearman on "
                f"{100 * pm['spearman_higher_share']:.0f}% (mean difference "
                f"{_pm(pm['spearman_diff_mean'], pm['spearman_diff_sem'])}{_p(pm.get('spearman_p_value'))})."
            )
            lines.append("")
    layer = "the last layer" if s["layer"] == -1 else f"layer {s['layer']}"
    functional = [AGREEMENT_LABELS[x] for x in maps if x != "attention"]
    note = (
        f"The virtual cross-attention rows compare the teacher's text-to-image attention of {layer} with the "
        "student's text-tower queries against its image-tower keys, per question word, heads averaged: the "
        "quantity `dide`'s attention loss minimises, which takes no part in the student's answer, so its agreement "
        "is the training objective read back, not evidence of where the student looks. "
    )
    if functional:
        note += (
            f"The functional maps ({', '.join(functional)}) come from each model's own computation, one map per "
            "example (the student's rollout: its image tower's attention flow; relevancy and IG: of each model's "
            f"own predicted answer; IG with {s.get('ig_steps', '?')} steps, its KL on the positive part). "
        )
    lines.append(
        note + f"KL(teacher ‖ student) and Spearman over the patches, mean ± standard error over the first {s['n']} "
        f"{results['dataset']} {results['split']} examples. {_minutes(results['seconds'])} on {m['cpu']} "
        f"({m['threads']} thread(s)), {results['created'][:10]}."
    )
    return "\n".join(lines)


def parse_students(items: list[str] | None) -> dict[str, str]:
    """["NAME=PATH", ...] -> {NAME: PATH} (default: the shipped shapes-vqa students, `DEFAULT_STUDENTS`)."""
    if not items:
        return dict(DEFAULT_STUDENTS)
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--students takes NAME=PATH, got {item!r}")
        out[name] = path
    return out


MEASURES = ("faithfulness", "agreement")


def explain_results(
    teacher: str | Path = "assets/shapes-vqa-teacher",
    students: dict[str, str | Path] | None = None,
    size: int = 200,
    out: str | Path = "assets/results",
    readme: str | Path | None = None,
    baseline: str = "mean",
    ig_steps: int = 16,
    random_orders: int = 3,
    seed: int = 0,
    layer: int = -1,
    progress: bool = True,
    data: dict | None = None,
    curve_steps: int | str = "patch",
    measures: tuple[str, ...] = MEASURES,
    maps: tuple[str, ...] = AGREEMENT_MAPS,
) -> dict:
    """Measure `measures` (both by default), write OUT/faithfulness.json and OUT/agreement.json, print the tables,
    and with `readme` replace its faithfulness and agreement sections. `data`: {"dataset", "data_root", "split"}
    to measure on another split or dataset (e.g. VQAv2 val read from disk). `curve_steps`: the points of each
    deletion / insertion curve, one per patch by default (as the shipped results were measured). `maps`: the
    agreement's maps. Returns {"faithfulness", "agreement", "tables", "written"} (None for a measure not run)."""
    from tqdm.auto import tqdm

    from workbench.report import replace_section

    unknown = sorted(set(measures) - set(MEASURES))
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; expected {MEASURES}")
    students, out = dict(students or DEFAULT_STUDENTS), Path(out)
    stages = tqdm(total=len(measures), desc="explain-results", disable=not progress)
    results, tables, written = {"faithfulness": None, "agreement": None}, {}, []
    if "faithfulness" in measures:
        stages.set_postfix_str("faithfulness")
        faith = measure_faithfulness(
            teacher, size, baseline=baseline, ig_steps=ig_steps, random_orders=random_orders, seed=seed,
            progress=progress, data=data, steps=curve_steps,
        )  # fmt: skip
        written.append(write_results(faith, out / "faithfulness.json"))
        results["faithfulness"], tables["faithfulness"] = faith, faithfulness_table(faith)
        stages.update()
    if "agreement" in measures:
        stages.set_postfix_str("agreement")
        agree = measure_agreement(
            teacher, students, size, layer=layer, seed=seed, progress=progress, data=data, maps=maps,
            ig_steps=ig_steps,
        )  # fmt: skip
        written.append(write_results(agree, out / "agreement.json"))
        results["agreement"], tables["agreement"] = agree, agreement_table(agree)
        stages.update()
    stages.close()
    for name, table in tables.items():
        print(f"\n### {name}\n\n{table}\n")
    print(f"wrote {' and '.join(map(str, written))}")
    if readme:
        for name, table in tables.items():
            changed = replace_section(readme, name, table)
            print(f"{'updated' if changed else 'unchanged'}: {readme} ({name})")
    return {**results, "tables": tables, "written": written}
