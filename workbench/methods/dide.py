"""DiDE: cross-modal attention distillation from a fusion teacher into a dual student (Wang et al., 2021).

Fine-tuning objective, as the official code: soft-label KD + text-to-image and image-to-text attention KD at
the chosen layers (`losses.attention_kl` on `losses.teacher_cross_scores` / `losses.student_cross_scores`);
the hard-label loss is off by default. `dide-pt` first runs DiDE's pre-training stage (image-text matching on
captions with attention distillation), then the same fine-tuning. docs/methods.md has the formulas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from workbench import losses
from workbench.methods.base import Method, register
from workbench.methods.dual_student import TeacherObjective, load_fusion_teacher
from workbench.train import TrainConfig, train


@dataclass
class DiDEConfig:
    hard: float = 0.0  # hard-label loss weight (the official fine-tuning switches it off)
    soft: float = 1.0  # soft-label KD weight
    t2i: float = 1.0  # text-to-image attention KD weight
    i2t: float = 1.0  # image-to-text attention KD weight
    temperature: float = 1.0  # soft-label KD temperature (attention KD is at T = 1)
    layers: tuple[int, ...] = (-1,)  # distilled layers, counted per model (-1: each one's last)
    teacher_cache: str | None = None  # folder keeping the teacher's logits and scores: later epochs skip it
    teacher_cache_dtype: Literal["float32", "bfloat16"] = "float32"  # float32: as uncached, to float rounding


@dataclass
class DiDEPretrainConfig(DiDEConfig):
    pretrain_dataset: str = "shapes-itm"  # the matching stage's captions
    pretrain_steps: int = 1000  # steps of the matching stage


class DiDEObjective(TeacherObjective):
    """`label_terms` + w_t2i * sum_layers KL_t2i + w_i2t * sum_layers KL_i2t (per head, padded keys masked)."""

    def loss(self, student, batch):
        c = self.config
        s = student(
            batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=c.layers, pixel_mask=batch.pixel_mask
        )
        t = self.teacher_outputs(batch, c.layers, s.image_masks)
        total, logs = self.label_terms(s.logits, t["logits"], batch)
        text_mask = batch.attention_mask
        t2i_sum = i2t_sum = 0.0
        for j, teacher_layers in enumerate(t["cross"]):  # one pass per image (NLVR has two)
            # padded images (the aspect-ratio pipeline of real ViLT folders): padding patches are neither keys of
            # the text queries nor queries of their own; None when every image token is real
            image_mask = s.image_masks[j] if s.image_masks else None
            # the i-th chosen layer of each model, counted per model (-1: each one's last), so towers of
            # different depths pair up: a 1-layer text tower's layer 0 with the image tower's last
            for (t_t2i, t_i2t), lq, lk in zip(teacher_layers, sorted(s.qk_text), sorted(s.qk_image[j])):
                s_t2i, s_i2t = losses.student_cross_scores(s.qk_text[lq], s.qk_image[j][lk])
                # text queries (padding excluded) over image keys; image queries over the real text keys
                t2i_sum = t2i_sum + losses.attention_kl(s_t2i, t_t2i, key_mask=image_mask, query_mask=text_mask)
                i2t_sum = i2t_sum + losses.attention_kl(s_i2t, t_i2t, key_mask=text_mask, query_mask=image_mask)
        total = total + c.t2i * t2i_sum + c.i2t * i2t_sum
        logs.update({"t2i": float(t2i_sum.detach()), "i2t": float(i2t_sum.detach())})
        return total, logs


def run_dide(cfg: TrainConfig, config: DiDEConfig, resume: bool = False, progress: bool = True) -> dict:
    teacher, cfg = load_fusion_teacher(cfg)
    cfg = replace(cfg, recipe_args=asdict(config))
    if isinstance(config, DiDEPretrainConfig):
        stage1 = pretrain_config(cfg, config)
        if not (Path(stage1.out) / "model" / "workbench.json").exists():
            # the task teacher has no matching head: the stage learns the gold match labels plus attention KD
            objective = DiDEObjective("dide", _matching_stage(config), one_image_view(teacher))
            train(stage1, recipe=objective, resume=resume, progress=progress)
        cfg = replace(cfg, init_from=str(Path(stage1.out) / "model"))
    objective = DiDEObjective(cfg.recipe, config, teacher)
    try:
        return train(cfg, recipe=objective, resume=resume, progress=progress)
    finally:
        objective.finish()


def _matching_stage(config: DiDEPretrainConfig) -> DiDEConfig:
    fields = {k: v for k, v in asdict(config).items() if k in DiDEConfig.__dataclass_fields__}
    # the stage's captions have their own teacher outputs: no cache (the task's cache is keyed by the task's data)
    return DiDEConfig(**{**fields, "hard": 1.0, "soft": 0.0, "teacher_cache": None})


def pretrain_config(cfg: TrainConfig, config: DiDEPretrainConfig) -> TrainConfig:
    """The matching stage's run: `pretrain_steps` on `pretrain_dataset` in `<out>/pretrain`."""
    steps = config.pretrain_steps
    return replace(
        cfg,
        dataset=config.pretrain_dataset,
        out=str(Path(cfg.out) / "pretrain"),
        recipe="dide",
        epochs=1,
        max_steps=steps,
        train_size=steps * cfg.batch_size,
        val_size=min(cfg.val_size, 600),
        test_size=600,
        init_from=None,
        data_root=None,  # the captions are generated; the task's data root is not theirs
        curriculum=[],  # the task's curriculum and oversampling name the task's question types, not the captions'
        oversample={},
        recipe_args=asdict(_matching_stage(config)),
    )


def one_image_view(teacher):
    """The teacher as it reads one image (the matching stage's captions): an NLVR teacher keeps its encoder
    and its first image's type embedding. Only its attention is distilled there, so its head is unused."""
    if teacher.num_images == 1:
        return teacher
    from workbench.models import for_task

    return for_task(teacher, 1, 2).eval()  # a new model: the two-image teacher itself is untouched


register(
    Method(
        name="dide",
        summary="DiDE: soft-label KD + text-to-image and image-to-text attention KD (virtual cross-attention)",
        task="answer",
        student="dual",
        Config=DiDEConfig,
        run=run_dide,
    )
)
register(
    Method(
        name="dide-pt",
        summary="DiDE with its pre-training stage: image-text matching + attention KD, then dide fine-tuning",
        task="answer",
        student="dual",
        Config=DiDEPretrainConfig,
        run=run_dide,
    )
)
