"""One distillation run: load the teacher, size the student like it, build the recipe, train.

`dide-pt` is two stages, as in the DiDE paper: first the student learns image-text matching on
shapes captions while its virtual cross-attention is distilled from the teacher's; then it is
fine-tuned on the task with `dide`. Our teachers are task models without a matching head, so the
first stage uses the gold match labels plus attention distillation only (the paper also has the
teacher's matching soft labels; ours cannot give them).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from workbench.data import load_dataset, num_images
from workbench.distill.recipes import DistillWeights, make_recipe
from workbench.errors import CheckpointError
from workbench.models.io import load_checkpoint
from workbench.models.stem import stem_channels
from workbench.train import TrainConfig, train

PRETRAIN_DATASET = "shapes-itm"
PRETRAIN_STEPS = 1000


def student_size(teacher) -> dict:
    """The student's towers take the teacher's width, depth, heads and patch grid: attention maps are
    compared head by head and key by key, so heads and image patches must correspond one to one."""
    c = teacher.config
    size = {
        "hidden_size": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "num_heads": c.num_attention_heads,
        "patch_size": c.patch_size,
        "image_size": c.image_size,
    }
    if stem_channels(c):  # the same convolutional stem in front of the image tower
        size["conv_stem"] = stem_channels(c)
    return size


def distill(
    cfg: TrainConfig,
    weights: DistillWeights | None = None,
    layers: tuple[int, ...] = (-1,),
    resume: bool = False,
    progress: bool = True,
    pretrain_steps: int = PRETRAIN_STEPS,
    mad=None,
) -> dict:
    """Train the dual student `cfg.out/model` from the teacher in `cfg.teacher` with `cfg.recipe`.

    MAD recipes (`workbench.distill.mad.MAD_VARIANTS`) instead train a fusion student from frozen unimodal
    teachers (`mad`: a `MADConfig`, default the variant's); `cfg.teacher`, `weights` and `layers` are unused."""
    from workbench.distill.mad import MAD_VARIANTS, distill_mad, mad_config

    if cfg.recipe in MAD_VARIANTS:
        return distill_mad(cfg, mad or mad_config(cfg.recipe), resume=resume, progress=progress)
    weights = weights or DistillWeights()
    if not cfg.teacher:
        raise ValueError("distillation needs cfg.teacher (the teacher's folder; its tokenizer is used too)")
    ck = load_checkpoint(cfg.teacher, kind="fusion")
    if cfg.recipe != "none":
        check_teacher_fits(ck, cfg.dataset)
    teacher = ck.model
    cfg = replace(cfg, model="dual", size={**student_size(teacher), **cfg.size})
    cfg.recipe_args = {"weights": asdict(weights), "layers": list(layers)}
    if cfg.recipe == "dide-pt":
        stage1 = _pretrain_config(cfg, pretrain_steps, weights)
        if not (Path(stage1.out) / "model" / "workbench.json").exists():
            recipe = make_recipe(
                "dide", one_image_view(teacher), weights=replace(weights, hard=1.0, soft=0.0), layers=layers
            )
            train(stage1, recipe=recipe, resume=resume, progress=progress)
        cfg = replace(cfg, init_from=str(Path(stage1.out) / "model"))
    recipe = make_recipe(cfg.recipe, teacher if cfg.recipe != "none" else None, weights=weights, layers=layers)
    return train(cfg, recipe=recipe, resume=resume, progress=progress)


def one_image_view(teacher):
    """The teacher as it reads one image (the matching stage's captions): an NLVR teacher keeps its encoder
    and its first image's type embedding. Only its attention is distilled there, so its head is unused."""
    if teacher.num_images == 1:
        return teacher
    from workbench.models import for_task

    return for_task(teacher, 1, 2).eval()  # a new model: the two-image teacher itself is untouched


def check_teacher_fits(teacher, dataset: str) -> None:
    """The student learns the teacher's answer distribution: its labels (in order) and image count must be
    the dataset's. Raises `CheckpointError` naming the difference."""
    data = load_dataset(dataset, "val", 1)
    labels, n_images = list(data.labels), num_images(dataset)
    if teacher.meta.get("num_images", 1) != n_images:
        raise CheckpointError(
            f"the teacher {teacher.path} takes {teacher.meta.get('num_images', 1)} image(s) per example; "
            f"{dataset} has {n_images}"
        )
    if list(teacher.labels) != labels:
        what = (
            f"{dataset}'s labels in another order"
            if set(teacher.labels) == set(labels)
            else f"{len(teacher.labels)} labels ({_some(teacher.labels)}), "
            f"{dataset} has {len(labels)} ({_some(labels)})"
        )
        raise CheckpointError(
            f"the teacher {teacher.path} (task {teacher.meta.get('task')!r}) predicts {what}: "
            f"distil from a teacher trained on {dataset}"
        )


def _some(labels, n: int = 5) -> str:
    return ", ".join(map(str, labels[:n])) + (", ..." if len(labels) > n else "")


def _pretrain_config(cfg: TrainConfig, steps: int, weights: DistillWeights) -> TrainConfig:
    return replace(
        cfg,
        dataset=PRETRAIN_DATASET,
        out=str(Path(cfg.out) / "pretrain"),
        recipe="dide",
        epochs=1,
        max_steps=steps,
        train_size=steps * cfg.batch_size,
        val_size=min(cfg.val_size, 600),
        test_size=600,
        init_from=None,
        curriculum=[],  # the task's curriculum and oversampling name the task's question types, not the captions'
        oversample={},
        recipe_args={"weights": asdict(replace(weights, hard=1.0, soft=0.0)), "layers": cfg.recipe_args["layers"]},
    )


__all__ = ["PRETRAIN_DATASET", "check_teacher_fits", "distill", "student_size"]
