"""The shipped assets the app serves: every teacher with its students (the task / model pairs of Ask,
Attention, Speed and Errors), the Retrieval tab's models, and a warm-up query per model.

The assets directory is an argument everywhere; without one it is the library's `workbench.api.assets_dir()`:
the environment variable WORKBENCH_ASSETS (what `python app.py --assets DIR` sets), else the repository's
`assets/`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from PIL import Image

from workbench.api import ask, assets_dir, load_model
from workbench.errors import WorkbenchError
from workbench.models.io import Checkpoint
from workbench.models.precision import inference_precision, is_large

Pair = tuple[Checkpoint, Checkpoint | None]  # (fusion teacher, its dual student or None)

# teacher folder in the assets -> display name, in this order
TASK_NAMES = {
    "shapes-vqa": "shapes VQA",
    "shapes-ve": "shapes entailment",
    "easy-vqa": "easy-VQA",
    "shapes-nlvr": "shapes NLVR (two images)",
}
# The Retrieval tab's models in the assets: the MCAD student (a dual encoder) and the fusion teacher with an
# image-text matching head that re-ranks its top k. Teachers of RETRIEVAL_TASKS serve only that tab (not Ask).
RETRIEVAL_STUDENT = "shapes-retrieval-student"
RETRIEVAL_FUSION = "shapes-itm-teacher"
RETRIEVAL_TASKS = ("shapes-itm", "shapes-retrieval")
RETRIEVAL_BUILD = (
    "`workbench experiment mcad` (the two teachers and the students; `--preset smoke` runs the pipeline in "
    "minutes), then `cp -r runs/mcad/students/mcad-seed0/model assets/shapes-retrieval-student` (the "
    "shipped student) and `cp -r runs/mcad/teachers/fusion-itm/model assets/shapes-itm-teacher`"
)
RETRIEVAL_GALLERY = 300  # shapes test scenes in the Retrieval tab's gallery (`python app.py --gallery-size`)


def shipped_pairs(assets: str | Path | None = None) -> dict[str, tuple[Path, Path | None]]:
    """Every shipped teacher (`<task>-teacher`) with its student (`<task>-student`) if one is shipped,
    plus any other shipped student of it (`<task>-student-<recipe>`, e.g. the no-distillation baseline)
    as a pair of its own. Display name -> (teacher folder, student folder or None)."""
    assets = assets_dir(assets)
    order = list(TASK_NAMES)
    tasks = sorted(p.name.removesuffix("-teacher") for p in assets.glob("[!.]*-teacher") if p.is_dir())
    tasks = [task for task in tasks if task not in RETRIEVAL_TASKS]  # the Retrieval tab's models
    tasks = [task for task in tasks if not _earlier_stage(assets, task)]
    tasks.sort(key=lambda task: order.index(task) if task in order else len(order))
    pairs, extra = {}, {}
    for task in tasks:
        t, name = assets / f"{task}-teacher", TASK_NAMES.get(task, task)
        main = assets / f"{task}-student"
        pairs[name] = (t, main if main.is_dir() else None)
        for s in sorted(assets.glob(f"{task}-student-*")):
            if s.is_dir():
                extra[f"{name} · {s.name[len(task) + 1 :]}"] = (t, s)
    return {**pairs, **extra}


def _earlier_stage(assets: Path, task: str) -> bool:
    """Whether `<task>-teacher` is an earlier stage of another shipped teacher of its dataset (shapes-vqa-base of
    shapes-vqa, which the other teachers start from): not a pair of the app's."""
    meta = assets / f"{task}-teacher" / "workbench.json"
    try:
        dataset = json.loads(meta.read_text()).get("dataset")
    except (OSError, ValueError):
        return False  # the pair's loading reports a broken folder
    return bool(dataset) and dataset != task and (assets / f"{dataset}-teacher").is_dir()


def load_pairs(paths: dict[str, tuple[Path, Path | None]]) -> dict[str, Pair]:
    """Load every checkpoint once (a teacher shared by several pairs is loaded once)."""
    loaded: dict[Path, Checkpoint] = {}

    def get(p: Path) -> Checkpoint:
        if p not in loaded:
            loaded[p] = load_model(p)
        return loaded[p]

    return {name: (get(t), get(s) if s is not None else None) for name, (t, s) in paths.items()}


@dataclasses.dataclass
class RetrievalModels:
    """The Retrieval tab's models: a dual encoder whose image index answers text queries, and optionally a
    fusion teacher with an image-text matching head ("match" among its labels) that re-ranks the top k.
    `note`: why a shipped one could not be loaded."""

    student: Checkpoint | None = None
    fusion: Checkpoint | None = None
    note: str = ""


def retrieval_gallery_name(student) -> str:
    """The test gallery the student was trained for (its checkpoint records it); a student without a shapes
    retrieval dataset (a CLIP folder, a Karpathy-trained one) gets the default, the hard gallery: each scene
    beside three variants with one object changed, so the results show whether a model tells "a red circle at
    top left" from "a red square at top left"."""
    from workbench.data import RETRIEVAL_DATASETS

    name = student.meta.get("dataset") if student is not None else None
    return name if name in RETRIEVAL_DATASETS else RETRIEVAL_DATASETS[0]


def load_retrieval(
    student: Path | None = None, fusion: Path | None = None, assets: str | Path | None = None
) -> RetrievalModels:
    """The given folders, else the shipped `RETRIEVAL_STUDENT` / `RETRIEVAL_FUSION` when present. A folder
    that does not load is reported in `note`, not raised: the rest of the app serves without it."""
    from workbench.models.clip import load_dual_encoder
    from workbench.models.io import load_checkpoint

    assets = assets_dir(assets)
    student = Path(student) if student else assets / RETRIEVAL_STUDENT
    fusion = Path(fusion) if fusion else assets / RETRIEVAL_FUSION
    models, notes = RetrievalModels(), []
    if student.is_dir():
        try:
            models.student = load_dual_encoder(student)
            models.student.model.eval()
        except WorkbenchError as e:
            notes.append(f"The retrieval student {student} did not load: {e}")
    if fusion.is_dir():
        try:
            ck = load_checkpoint(fusion, kind="fusion")
        except WorkbenchError as e:
            notes.append(f"The fusion teacher {fusion} did not load: {e}")
        else:
            if "match" in ck.labels:
                models.fusion = ck
            else:
                notes.append(f"The fusion teacher {fusion} has no image-text matching head (no 'match' label).")
    models.note = " ".join(notes)
    return models


def warm_up(pairs: dict[str, Pair]) -> None:
    """One query per model, so the first user's request does not pay for lazy initialisation. A large model
    (`workbench.models.precision.is_large`, whatever precision it runs in) also computes one IG map: at ViLT-B/32 size
    the process's first backward passes fault in about a GB of fresh memory (the teacher and student pair's first
    IG took 6.3-7.7 s, the next ones 3.9-4.6 s; docs/results.md), which the Attention tab's first click would
    otherwise pay. The toy models skip it (a few milliseconds either way)."""
    blank = Image.new("RGB", (64, 64), "white")
    seen: set[int] = set()  # a teacher shared by several pairs is warmed once
    for teacher, student in pairs.values():
        second = blank if int(teacher.meta.get("num_images", 1)) == 2 else None
        for ck in (teacher, student):
            if ck is None or id(ck) in seen:
                continue
            seen.add(id(ck))
            ask(ck, blank, "is there a red circle?", second_image=second)
            if second is None and is_large(ck.model):
                _warm_up_ig(ck, blank)


def _warm_up_ig(ck: Checkpoint, image: Image.Image) -> None:
    """The Attention tab's Integrated Gradients map of one model (its steps, its precision), computed and thrown
    away."""
    from workbench.explain import encode, explain  # here: the explanation modules load Captum
    from workbench.explain.attribution import TAB_IG_STEPS

    batch = encode(ck.model, ck.tokenizer, image, "is there a red circle?", image_pipeline=ck.image_pipeline)
    with inference_precision(ck.model, "auto"):
        explain(ck.model, batch, ck.tokenizer, ("ig",), ig_steps=TAB_IG_STEPS)
