"""The DiDE results grid (configs as data): which runs, running them resumably, and the table.

`workbench experiment dide` runs every run of `GRID` that is not finished yet, in order, then
collects `assets/results/dide.json`. Several workers may share a grid: each run is claimed with
a lock file holding the worker's pid (a lock whose process is gone is taken over, and the run
resumes from its last checkpoint). So the grid survives interruptions and can be spread over
processes or sessions; `--collect` only gathers what is finished.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from workbench.data.easy_vqa import CURRICULUM as EASY_VQA_CURRICULUM
from workbench.data.easy_vqa import OVERSAMPLE as EASY_VQA_OVERSAMPLE
from workbench.distill.recipes import DistillWeights
from workbench.models.io import weights_fingerprint
from workbench.train import TrainConfig

# One budget for every student (the issue: a default student distils in at most 20 minutes here).
STUDENT_RUN = dict(
    epochs=1,
    train_size=192_000,
    max_steps=3000,
    batch_size=64,
    lr=7e-4,
    warmup_steps=300,
    val_size=600,
    test_size=3000,
    save_every=500,
)
# easy-VQA has 34,700 training questions (x4 flips), the whole test split; every recipe sees the data as the
# teacher did, within the same 3,000 steps: its curriculum (shape questions first: without it the teacher never
# learned shape) and the rarest yes/no kind drawn 4 times
TASK_RUN = {
    "easy-vqa": dict(
        STUDENT_RUN,
        train_size=None,
        test_size=None,
        curriculum=EASY_VQA_CURRICULUM,
        oversample=EASY_VQA_OVERSAMPLE,
    )
}
# question types that need relations between objects or positions (the ones a dual encoder finds hard)
RELATIONAL = {"shapes-vqa": ("relation", "comparison", "position"), "shapes-ve": ("relation",)}


@dataclass(frozen=True)
class Run:
    task: str  # dataset name; the teacher is assets/<task>-teacher
    recipe: str  # none | kd | dide | dide-pt
    seed: int = 0
    layers: tuple[int, ...] = (-1,)
    text_layers: int | None = None  # a shallower student text tower (the speed ablation); None: the teacher's
    steps: int | None = None  # a longer budget of fresh examples (the budget ablation, shapes tasks); None: the task's

    @property
    def variant(self) -> str:
        """Row name in the table: the recipe, plus the distilled layers / text depth when not the default."""
        notes = [f"layers {','.join(map(str, self.layers))}"] if self.layers != (-1,) else []
        notes += [f"text tower {self.text_layers} layer{'s' * (self.text_layers > 1)}"] if self.text_layers else []
        notes += [f"{self.steps:,} steps"] if self.steps else []
        return f"{self.recipe} ({'; '.join(notes)})" if notes else self.recipe

    @property
    def name(self) -> str:
        layers = "" if self.layers == (-1,) else "-layers" + "_".join(str(x) for x in self.layers)
        text = f"-text{self.text_layers}" if self.text_layers else ""
        steps = f"-steps{self.steps}" if self.steps else ""
        return f"{self.recipe}{layers}{text}{steps}-seed{self.seed}"

    def config(self, root: Path, assets: Path) -> TrainConfig:
        budget = TASK_RUN.get(self.task, STUDENT_RUN)
        return TrainConfig(
            model="dual",
            dataset=self.task,
            out=str(root / self.task / self.name),
            seed=self.seed,
            recipe=self.recipe,
            teacher=str(assets / f"{self.task}-teacher"),
            size={"text_layers": self.text_layers} if self.text_layers else {},
            **(budget | self._longer(budget) if self.steps else budget),
        )

    def _longer(self, budget: dict) -> dict:
        """`steps` steps of fresh examples: the one epoch grows with the steps (else it would end the run first)."""
        if budget.get("train_size") is None:
            raise ValueError(f"a longer budget needs a generated dataset (shapes-*), not {self.task}")
        return {"max_steps": self.steps, "train_size": max(budget["train_size"], self.steps * budget["batch_size"])}


# the speed ablation, shipped as assets/shapes-vqa-student-fast: a one-layer text tower, so a query against
# cached image features runs one transformer layer and the head (issue 5's batch-1 latency target)
FAST_STUDENT = Run("shapes-vqa", "dide", text_layers=1)


def _grid() -> tuple[Run, ...]:
    """In order of what we need first: seed 0 of each recipe, the shipped students, more seeds, ablations."""
    vqa = "shapes-vqa"
    runs = [Run(vqa, r) for r in ("none", "dide", "kd")]
    runs += [Run(t, "dide") for t in ("shapes-ve", "easy-vqa", "shapes-nlvr")]  # the shipped students
    runs += [Run(vqa, r, seed) for seed in (1, 2) for r in ("none", "dide")]
    runs += [Run(vqa, "kd", seed) for seed in (1, 2)]
    runs += [Run(vqa, "dide-pt", seed) for seed in (0, 1, 2)]
    runs += [Run(vqa, "dide", 0, (0, 1, 2, 3))]  # ablation: every layer instead of the last
    runs += [Run(t, r) for t in ("shapes-ve", "easy-vqa", "shapes-nlvr") for r in ("none", "kd")]
    runs += [Run(t, "dide-pt") for t in ("shapes-ve", "easy-vqa", "shapes-nlvr")]  # every recipe on every task
    runs += [FAST_STUDENT]
    # ablation: is the budget what keeps the student 21 points below its teacher? 7,500 steps is about what two
    # idle threads run in 20 minutes (0.16 s/step); the teacher took 8,000
    runs += [Run("shapes-ve", "dide", steps=7500)]
    return tuple(runs)


GRID = _grid()


def is_done(run_dir: Path) -> bool:
    return (run_dir / "model" / "workbench.json").exists()


def claim(run_dir: Path) -> bool:
    """Take the run's lock (atomic create). A lock left by a dead process is taken over."""
    lock = run_dir.with_name(run_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                return False
            lock.unlink(missing_ok=True)  # stale: its worker died; the run resumes from its state
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(run_dir: Path) -> None:
    run_dir.with_name(run_dir.name + ".lock").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_grid(
    root: Path,
    assets: Path,
    runs=GRID,
    tasks: tuple[str, ...] | None = None,
    progress: bool = True,
    previous: dict | None = None,
):
    """Run every unfinished, unclaimed run in order; a run `previous` (the last `dide.json`) already
    records counts as finished. Returns the names of the runs this call finished."""
    from workbench.distill.run import distill

    finished = []
    runs = [run for run in runs if not tasks or run.task in tasks]
    fingerprints = teacher_fingerprints(assets, runs)
    for run in runs:
        cfg = run.config(root, assets)
        out = Path(cfg.out)
        fingerprint = fingerprints[run.task]
        done = _measured(out)
        if done is not None and _current(done, fingerprint) is None:
            # distilled from a teacher since rebuilt: kept aside, and the run starts over
            out.rename(out.with_name(f"{out.name}.teacher-{done['teacher_fingerprint']}"))
        if is_done(out) or _current(_recorded(previous, run), fingerprint) or not claim(out):
            continue
        try:
            print(f"== {run.task} / {run.name}")
            distill(cfg, DistillWeights(), run.layers, resume=out.exists(), progress=progress)
            finished.append(f"{run.task}/{run.name}")
        finally:
            release(out)
    return finished


# ----------------------------------------------------------------------------------------------
# collecting results


def _summary(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,  # sample std over seeds
        "values": values,
    }


def _measured(run_dir: Path) -> dict | None:
    """One finished run's test figures, or None if it has not finished."""
    meta_path = run_dir / "model" / "workbench.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    seconds = meta.get("train_seconds", 0)
    stage1 = run_dir / "pretrain" / "model" / "workbench.json"  # dide-pt: its matching stage counts too
    if stage1.exists():
        seconds += json.loads(stage1.read_text()).get("train_seconds", 0)
    return {
        "accuracy": meta["metrics"]["test"]["accuracy"],
        "per_type": {q: m["accuracy"] for q, m in meta["metrics"]["test"]["per_type"].items()},
        "n": meta["metrics"]["test"]["n"],
        "minutes": round(seconds / 60, 1),
        "steps": meta.get("steps"),
        **({"teacher_fingerprint": meta["teacher_fingerprint"]} if "teacher_fingerprint" in meta else {}),
    }


def teacher_fingerprints(assets: Path, runs) -> dict[str, str | None]:
    """{task: fingerprint of assets/<task>-teacher now}, each teacher hashed once."""
    return {task: weights_fingerprint(Path(assets) / f"{task}-teacher") for task in {r.task for r in runs}}


def _current(record: dict | None, fingerprint: str | None) -> dict | None:
    """`record` if its student was distilled from the teacher now in assets/, else None. Runs from before
    fingerprints were recorded count (they cannot be told apart)."""
    if record is None:
        return None
    seen = record.get("teacher_fingerprint")
    return record if seen is None or fingerprint is None or seen == fingerprint else None


def _recorded(previous: dict | None, run: Run) -> dict | None:
    """The run's figures as an earlier `collect` wrote them (run folders are scratch and may be gone)."""
    row = ((previous or {}).get(run.task) or {}).get("rows", {}).get(run.variant) or {}
    found = [r for r in row.get("runs", []) if r["seed"] == run.seed]
    return {k: v for k, v in found[0].items() if k != "seed"} if found else None


def collect(root: Path, assets: Path, runs=GRID, previous: dict | None = None) -> dict:
    """Gather finished runs into {task: {"teacher": ..., "rows": {variant: ...}}} with per-type stats.

    A run whose folder is gone keeps the figures `previous` (the last `dide.json`) recorded for it,
    so the table grows across sessions; a run folder present now always wins."""
    results: dict = {}
    fingerprints = teacher_fingerprints(assets, runs)  # students of another teacher do not count
    for run in runs:
        fingerprint = fingerprints[run.task]
        measured = _current(_measured(Path(run.config(root, assets).out)), fingerprint)
        measured = measured or _current(_recorded(previous, run), fingerprint)
        if measured is None:
            continue
        if run.task not in results:  # the teacher's figures, read once per task
            results[run.task] = {"teacher": _teacher(assets, run.task, fingerprint), "rows": {}}
        task = results[run.task]
        row = task["rows"].setdefault(run.variant, {"seeds": [], "runs": []})
        row["seeds"].append(run.seed)
        row["runs"].append({"seed": run.seed, **measured})
    for task, entry in results.items():
        for row in entry["rows"].values():
            row["accuracy"] = _summary([r["accuracy"] for r in row["runs"]])
            qtypes = row["runs"][0]["per_type"]
            row["per_type"] = {q: _summary([r["per_type"][q] for r in row["runs"]]) for q in qtypes}
        entry["checks"] = _checks(task, entry)
    return results


def _teacher(assets: Path, task: str, fingerprint: str | None) -> dict | None:
    path = assets / f"{task}-teacher" / "workbench.json"
    if not path.exists():
        return None
    test = json.loads(path.read_text())["metrics"]["test"]
    return {
        "accuracy": test["accuracy"],
        "per_type": {q: m["accuracy"] for q, m in test["per_type"].items()},
        "fingerprint": fingerprint,
    }


def _checks(task: str, entry: dict) -> dict:
    """The issue's targets, measured: dide within 1.5 points of the teacher; dide beats none on the
    relational types by more than the seed spread (taken as std(dide) + std(none), conservative)."""
    rows, teacher, checks = entry["rows"], entry["teacher"], {}
    if "dide" in rows and teacher:
        gap = 100 * (teacher["accuracy"] - rows["dide"]["accuracy"]["mean"])
        checks["dide_gap_to_teacher_points"] = {"value": round(gap, 2), "target": 1.5, "met": gap <= 1.5}
    if "dide" in rows and "none" in rows:
        for q in RELATIONAL.get(task, ()):
            d, n = rows["dide"]["per_type"].get(q), rows["none"]["per_type"].get(q)
            if d is None or n is None:
                continue
            margin = 100 * (d["mean"] - n["mean"])
            have_spread = d["std"] is not None and n["std"] is not None
            spread = 100 * (d["std"] + n["std"]) if have_spread else None
            checks[f"dide_minus_none_{q}_points"] = {
                "value": round(margin, 2),
                "spread": None if spread is None else round(spread, 2),
                "met": None if spread is None else margin > spread,  # None: one seed, no spread yet
            }
    return checks


def write_results(results: dict, path: Path) -> None:
    from workbench.models.io import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, results)


def _fmt(summary: dict) -> str:
    mean = 100 * summary["mean"]
    if summary.get("std") is None:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * summary['std']:.1f}"


def results_table(results: dict) -> str:
    """Markdown: per task, teacher then each recipe, overall and per question type (mean ± std over seeds)."""
    blocks = []
    for task, entry in results.items():
        qtypes = sorted({q for row in entry["rows"].values() for q in row["per_type"]})
        head = f"| {task} | seeds | overall | " + " | ".join(qtypes) + " | minutes |"
        lines = [head, "|" + "---|" * (len(qtypes) + 4)]
        if entry["teacher"]:
            t = entry["teacher"]
            cells = " | ".join(f"{100 * t['per_type'][q]:.1f}" if q in t["per_type"] else "" for q in qtypes)
            lines.append(f"| teacher (fusion) | | {100 * t['accuracy']:.1f} | {cells} | |")
        for variant, row in entry["rows"].items():
            cells = " | ".join(_fmt(row["per_type"][q]) if q in row["per_type"] else "" for q in qtypes)
            minutes = statistics.fmean(r["minutes"] for r in row["runs"])
            lines.append(
                f"| student `{variant}` | {len(row['runs'])} | {_fmt(row['accuracy'])} | {cells} | {minutes:.1f} |"
            )
        checks = entry.get("checks", {})
        if checks:
            notes = "; ".join(
                f"{k}: {v['value']}"
                + (f" (spread {v['spread']})" if "spread" in v else "")
                + {True: " — met", False: " — NOT met", None: " — pending (needs 2+ seeds)"}[v["met"]]
                for k, v in checks.items()
            )
            lines.append(f"\nTargets ({task}): {notes}.")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "(no finished runs yet)"


__all__ = ["GRID", "RELATIONAL", "Run", "claim", "collect", "release", "results_table", "run_grid", "write_results"]
