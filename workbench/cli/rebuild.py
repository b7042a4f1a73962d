"""`workbench rebuild`: retrain the shipped teachers (workbench/configs/teachers.py), distil the shipped
students from them (runs of the DiDE grid), and copy each into the assets folder."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

NAME = "rebuild"
HELP = "retrain the shipped default checkpoints into assets/"
STUDENT_GRID = "dide"  # the shipped students are runs of this grid (its `shipped`: workbench/configs/grids.py)


def shipped_students() -> dict[str, tuple[str, str]]:
    """{asset folder: (task, grid row)} of the shipped students."""
    from workbench.configs.grids import GRIDS

    return dict(GRIDS[STUDENT_GRID]["shipped"])


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.configs.teachers import TEACHERS

    students = shipped_students()
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Retrain the shipped teachers (" + ", ".join(TEACHERS) + ") with their recorded settings "
        f"(workbench/configs/teachers.py), then distil the shipped students ({', '.join(students)}) from them as "
        f"the seed-0 runs of the {STUDENT_GRID} grid (workbench/configs/grids.py), and copy each into ASSETS. A "
        f"student run already finished under RUNS/{STUDENT_GRID} is reused: use a fresh --runs to redo all.",
    )
    p.add_argument(
        "--only", nargs="*", choices=[*TEACHERS, *students], help="rebuild only these (e.g. shapes-vqa "
        "shapes-vqa-student)"
    )  # fmt: skip
    p.add_argument("--runs", default="runs", help="where the training runs go")
    p.add_argument("--assets", default="assets")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.configs.teachers import TEACHERS
    from workbench.data.samples import write_samples

    runs, assets, students = Path(args.runs), Path(args.assets), shipped_students()
    for name in args.only or [*TEACHERS, *students]:
        if name in students:
            rebuild_student(name, runs, assets, progress=not args.no_progress)
        else:
            rebuild_teacher(name, runs, assets, resume=args.resume, progress=not args.no_progress)
    write_samples(assets / "samples")


def rebuild_teacher(name: str, runs: Path, assets: Path, resume: bool, progress: bool) -> None:
    from workbench.configs.teachers import teacher_config, teacher_name
    from workbench.train import train

    cfg = teacher_config(name, runs, assets)  # its init_from / warm_start: a teacher built earlier in the loop
    print(f"== training the {name} teacher into {cfg.out}")
    train(cfg, resume=resume, progress=progress)
    ship(Path(cfg.out) / "model", assets / teacher_name(name))


def student_run(name: str):
    """(the grid, the run) a shipped student folder is copied from."""
    from workbench.experiments import get_grid, shipped_run

    grid = get_grid(STUDENT_GRID)
    return grid, shipped_run(grid, name)


def rebuild_student(name: str, runs: Path, assets: Path, progress: bool) -> None:
    from workbench.experiments import run_grid

    grid, run = student_run(name)
    root = runs / grid.name
    print(f"== distilling the {run.task} student into {run.dir(root)}")
    picked = dict(tasks=[run.task], rows=[run.row], seeds=[run.seed], settings=[run.setting] if run.setting else None)
    run_grid(grid, root, assets, select=picked, progress=progress)
    ship(run.dir(root) / "model", assets / name)


def ship(model_dir: Path, dest: Path) -> None:
    """Copy a trained checkpoint folder into the assets folder (replacing the old one). A model of a run in stages
    trained before it recorded its earlier stage's time gets it here (`earlier_stage_seconds`, from the run's
    stage folder), so the copy still counts the whole run."""
    from workbench.models.io import write_json_atomic
    from workbench.train.stages import stage_seconds

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model_dir, dest)
    meta = json.loads((dest / "workbench.json").read_text())
    earlier = stage_seconds(meta, Path(model_dir).parent)
    if earlier and "earlier_stage_seconds" not in meta:
        write_json_atomic(dest / "workbench.json", {**meta, "earlier_stage_seconds": earlier})
    print(f"shipped {dest}")
