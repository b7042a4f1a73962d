"""What a run takes from the folder it starts from (its teacher, else its `init_from`): the class order a real
dataset is read in, and how images are preprocessed.

A student must read the teacher's answers in the teacher's order (VQAv2: its `id2label` is the answer
vocabulary) and exactly the teacher's pixels (a Hugging Face ViLT folder keeps the aspect ratio and pads, with
a pixel mask; `workbench.models.io.Checkpoint.image_spec`). Both are read from the folder's JSON files, so no
weights are loaded for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from workbench.data.shapes import NLVR_LABELS, VE_LABELS
from workbench.errors import CheckpointError
from workbench.models.io import Checkpoint
from workbench.models.preprocess import ViltImageSpec

# Hugging Face ViLT heads whose `id2label` names the classes of a task (a ViltForMaskedLM folder has none)
CLASSIFIERS = ("ViltForQuestionAnswering", "ViltForImagesAndTextClassification")
# the classes of the real single-label datasets; a folder's labels are used when they name these (any order, case)
CLASSES = {"snli-ve": VE_LABELS, "nlvr2": NLVR_LABELS}


def source_folder(cfg) -> Path | None:
    """The folder a run's data and pixels follow: the teacher (a student learns its answers), else `init_from`."""
    folder = cfg.teacher or cfg.init_from
    return Path(folder) if folder else None


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def is_hf_vilt(folder: Path) -> bool:
    """A Hugging Face ViLT folder (`save_pretrained`), not one the workbench wrote."""
    config = folder / "config.json"
    return not (folder / "workbench.json").is_file() and config.is_file() and _read(config).get("model_type") == "vilt"


def folder_head(folder: Path) -> tuple[str, list[str]] | None:
    """(task, class names in the head's order) of a checkpoint folder: workbench.json's, or a HF ViLT
    classifier's (`id2label`); None for a folder without a task head (e.g. a ViltForMaskedLM one)."""
    if (folder / "workbench.json").is_file():
        meta = _read(folder / "workbench.json")
        return (str(meta.get("task")), list(meta["labels"])) if meta.get("labels") else None
    if not is_hf_vilt(folder):
        return None
    config = _read(folder / "config.json")
    id2label = config.get("id2label") or {}
    architecture = (config.get("architectures") or [CLASSIFIERS[0]])[0]
    if architecture not in CLASSIFIERS or not id2label:
        return None
    task = "vqa" if architecture == CLASSIFIERS[0] else "nlvr"
    return task, [id2label[k] for k in sorted(id2label, key=int)]


def folder_image_spec(folder: Path | None) -> ViltImageSpec | None:
    """The aspect-ratio preprocessing of a folder (`Checkpoint.image_spec`: its `preprocessor_config.json`, HF's
    defaults for a HF ViLT folder without one), or None for the square pipeline of our own checkpoints."""
    if folder is None:
        return None
    meta = {"source": "huggingface-vilt"} if is_hf_vilt(folder) else {}
    return Checkpoint(model=None, tokenizer=None, meta=meta, path=folder).image_spec


def dataset_labels(cfg) -> Sequence[str] | None:
    """The `labels` a run reads a real dataset with: the source folder's classes when they are the dataset's
    (VQAv2: a VQA model's answer vocabulary), else None (VQAv2: ViLT's rule over the annotations; SNLI-VE /
    NLVR2: the dataset's own order, for a new head)."""
    if cfg.dataset not in (*CLASSES, "vqav2"):
        return None
    folder = source_folder(cfg)
    head = folder_head(folder) if folder is not None else None
    if head is None:
        return None
    task, labels = head
    if cfg.dataset == "vqav2":
        return labels if task == "vqa" else None
    names = {str(x).lower() for x in CLASSES[cfg.dataset]}
    return labels if len(labels) == len(names) and {str(x).lower() for x in labels} == names else None


def folder_text_limit(folder: Path | None) -> int | None:
    """The longest token sequence a checkpoint folder's model takes (its text position embeddings), or None."""
    if folder is None or not (folder / "config.json").is_file():
        return None
    config = _read(folder / "config.json")
    text = config.get("text") if isinstance(config.get("text"), dict) else config  # a dual student: its text tower
    limit = text.get("max_position_embeddings")
    return limit if isinstance(limit, int) and limit > 0 else None
