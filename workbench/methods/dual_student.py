"""What every "fusion teacher -> dual student" answer method shares: the label losses, the student's size,
the teacher check, and the run itself (load the teacher, size the student like it, build the objective,
train). `none`, `kd`, `dide` and `dide-pt` are built on it; a new logit- or attention-level method
usually only writes its objective's `loss` (docs/adding-a-method.md).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from torch import nn

from workbench import losses
from workbench.data import load_dataset, num_images
from workbench.errors import CheckpointError, WorkbenchError
from workbench.methods.teacher_cache import TeacherOutputCache, assemble, cache_key_batch, entry_of, teacher_outputs
from workbench.models.io import load_checkpoint
from workbench.models.stem import stem_channels
from workbench.train import TrainConfig, batch_accuracy, train


class TeacherObjective:
    """Base of the objectives that learn from a frozen fusion teacher (or from labels only, `teacher=None`).

    The teacher runs in inference mode and never receives a gradient. `label_terms` gives the hard and soft
    label losses with the config's weights `hard`, `soft`, `temperature` (absent: hard only)."""

    def __init__(self, name: str, config, teacher: nn.Module | None = None):
        self.name = name
        self.config = config
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        folder = getattr(config, "teacher_cache", None)
        self.cache = None
        if folder and self.teacher is not None:
            self.cache = TeacherOutputCache(folder, self.teacher, getattr(config, "teacher_cache_dtype", "float32"))

    def prepare(self, accelerator, student) -> None:
        if self.teacher is not None:
            self.teacher.to(accelerator.device)

    @torch.no_grad()
    def teacher_out(self, batch, qk_layers: tuple[int, ...] = ()):
        return self.teacher(
            batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=qk_layers, pixel_mask=batch.pixel_mask
        )

    @torch.no_grad()
    def teacher_outputs(self, batch, layers: tuple[int, ...] = (), image_masks=None) -> dict:
        """{"logits", "cross": per image, per layer (t2i, i2t) scores} of the teacher, from the on-disk cache
        when every example of the batch is in it (`config.teacher_cache`), else by running the teacher (and
        caching what it gave). `image_masks`: the batch's image-token masks (the student's output has them)."""
        if self.cache is None:
            return teacher_outputs(self.teacher, batch, layers)
        keys = cache_key_batch(batch)
        entries = self.cache.get(keys)
        n_images = batch.pixel_values.shape[1]
        if all(e is not None for e in entries):
            n_layers = sum(name.startswith("t2i.0.") for name in entries[0])
            return assemble(entries, batch, image_masks, n_images, n_layers)
        out = teacher_outputs(self.teacher, batch, layers)
        for i, key in enumerate(keys):
            self.cache.put(key, entry_of(out, batch, i, image_masks))
        return out

    def finish(self) -> None:
        """Write the cache entries not yet on disk (the run is over)."""
        if self.cache is not None:
            self.cache.flush()

    def label_terms(self, student_logits, teacher_logits, batch) -> tuple[torch.Tensor, dict]:
        """Soft-label KD (weight `soft`) plus the hard-label loss (weight `hard`), each skipped at weight 0.

        Single-label tasks: softmax KL at `temperature` and cross-entropy. Multi-label VQA (batches that carry
        soft VQA `targets`): BCE against the teacher's sigmoids and BCE against the VQA targets, each times
        the number of answers, as the official DiDE and ViLT code."""
        c = self.config
        hard_w, soft_w = getattr(c, "hard", 1.0), getattr(c, "soft", 0.0)
        targets = getattr(batch, "targets", None)
        # the student's batch accuracy on the gold labels: logged, and read by `until=` curriculum phases
        total, logs = student_logits.new_zeros(()), {"accuracy": batch_accuracy(student_logits, batch.labels)}
        if soft_w:
            if targets is not None:
                soft = losses.soft_label_kd_multilabel(student_logits, teacher_logits)
            else:
                soft = losses.soft_label_kd(student_logits, teacher_logits, c.temperature)
            total, logs["soft"] = total + soft_w * soft, soft.item()
        if hard_w:
            if targets is not None:
                hard = losses.vqa_bce(student_logits, targets)
            else:
                hard = nn.functional.cross_entropy(student_logits, batch.labels)
            total, logs["ce"] = total + hard_w * hard, hard.item()
        return total, logs


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


def check_teacher_fits(teacher, dataset: str, data_root: str | None = None) -> None:
    """The student learns the teacher's answer distribution: its labels (in order) and image count must be
    the dataset's. Raises `CheckpointError` naming the difference. A real dataset (`data_root`) takes its
    answer vocabulary from the teacher, so only the image count is checked there."""
    if data_root is not None:
        if teacher.meta.get("num_images", getattr(teacher.model, "num_images", 1)) != num_images(dataset):
            raise CheckpointError(
                f"the teacher {teacher.path} takes {teacher.model.num_images} image(s) per example; "
                f"{dataset} has {num_images(dataset)}"
            )
        return
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


def load_fusion_teacher(cfg: TrainConfig, learns_from_it: bool = True):
    """The teacher checkpoint of `cfg.teacher` (checked against the dataset when the student learns from it)
    and `cfg` turned into the dual student's config: its size is the teacher's unless `cfg.size` says else."""
    if not cfg.teacher:
        raise WorkbenchError(
            "distillation needs a teacher (--teacher: the fusion teacher's folder; its tokenizer is used too)"
        )
    ck = load_checkpoint(cfg.teacher, kind="fusion")
    if learns_from_it:
        check_teacher_fits(ck, cfg.dataset, getattr(cfg, "data_root", None))
    return ck.model, replace(cfg, model="dual", size={**student_size(ck.model), **cfg.size})


def teacher_to_dual(objective_cls):
    """A `Method.run` for a dual student trained with `objective_cls(name, config, teacher)` from the fusion
    teacher in `cfg.teacher` (the `none` baseline takes only the teacher's tokenizer and size)."""

    def run(cfg: TrainConfig, config, resume: bool = False, progress: bool = True) -> dict:
        learns = cfg.recipe != "none"
        teacher, cfg = load_fusion_teacher(cfg, learns_from_it=learns)
        cfg = replace(cfg, recipe_args=asdict(config))
        objective = objective_cls(cfg.recipe, config, teacher if learns else None)
        try:
            return train(cfg, recipe=objective, resume=resume, progress=progress)
        finally:
            objective.finish()

    return run
