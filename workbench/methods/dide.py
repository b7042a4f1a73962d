"""DiDE: cross-modal attention distillation from a fusion teacher into a dual student (Wang et al., 2021).

Fine-tuning objective, as the official code: soft-label KD + text-to-image and image-to-text attention KD at
the paired layers (`losses.attention_kl` on `losses.teacher_cross_scores` / `losses.student_cross_scores`;
the pairing is `layer_map`, validated before a run starts: `workbench.methods.layer_map`); the hard-label loss
is off by default.

`dide-pt` runs DiDE's pre-training stage first, as the paper describes it: on image-caption pairs, a fusion
model with an image-text matching head (`pretrain_teacher`, e.g. assets/shapes-itm-teacher) is distilled into
the dual student: its matching distribution (soft labels, `losses.soft_label_kd` on the two-way match logits)
and its own cross-modal attention. Then `dide` fine-tuning from the task teacher starts from that student.
`dide-pt-task-attn` is the ablation that stood in for it before: the same stage with the *task* teacher's
attention on the captions and the gold match labels (no matching teacher). docs/methods.md has the formulas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from workbench import losses
from workbench.errors import CheckpointError, WorkbenchError
from workbench.methods import layer_map as pairing
from workbench.methods.base import Method, register
from workbench.methods.dual_student import (
    TeacherObjective,
    check_teacher_fits,
    load_fusion_teacher,
    student_size,
)
from workbench.train import TrainConfig, train
from workbench.train.stages import STAGE_DIR
from workbench.train.teachers_seen import changed_teachers, refuse_changed, teachers_of


@dataclass
class DiDEConfig:
    hard: float = 0.0  # hard-label loss weight (the official fine-tuning switches it off)
    soft: float = 1.0  # soft-label KD weight
    t2i: float = 1.0  # text-to-image attention KD weight
    i2t: float = 1.0  # image-to-text attention KD weight
    temperature: float = 1.0  # soft-label KD temperature (attention KD is at T = 1)
    layers: tuple[int, ...] = (-1,)  # distilled layers, the i-th of each model paired (-1: each one's last)
    # explicit teacher -> student pairs, replacing `layers`: TEACHER:STUDENT (both towers) or TEACHER:TEXT:IMAGE,
    # negative from the end (e.g. 3:0:3); checked against the depths before the run starts
    layer_map: tuple[str, ...] = ()
    teacher_cache: str | None = None  # folder keeping the teacher's logits and scores: later epochs skip it
    teacher_cache_dtype: Literal["float32", "bfloat16"] = "float32"  # float32: as uncached, to float rounding


@dataclass
class DiDEPretrainConfig(DiDEConfig):
    pretrain_teacher: str | None = None  # stage 1's teacher: a fusion checkpoint with a matching head
    pretrain_dataset: str = "shapes-itm-mixed"  # stage 1's image-caption pairs (the matching teacher's data)
    pretrain_steps: int = 1000  # steps of the matching stage


@dataclass
class DiDETaskAttnPretrainConfig(DiDEConfig):
    pretrain_dataset: str = "shapes-itm"  # the matching stage's captions
    pretrain_steps: int = 1000  # steps of the matching stage


PRETRAIN_CONFIGS = (DiDEPretrainConfig, DiDETaskAttnPretrainConfig)


class DiDEObjective(TeacherObjective):
    """`label_terms` + w_t2i * sum_pairs KL_t2i + w_i2t * sum_pairs KL_i2t (per head, padded keys masked)."""

    def pairs(self, student) -> tuple[pairing.Pair, ...]:
        """(teacher layer, text layer, image layer) of every distilled pair (raises `LayerMapError`)."""
        c, student = self.config, getattr(student, "module", student)
        return pairing.resolve(c.layer_map, c.layers, **pairing.model_depths(self.teacher, student))

    def loss(self, student, batch):
        c = self.config
        pairs = self.pairs(student)
        teacher_layers = tuple(sorted({p[0] for p in pairs}))
        student_layers = tuple(sorted({p[1] for p in pairs} | {p[2] for p in pairs}))
        s = student(
            batch.input_ids,
            batch.attention_mask,
            batch.pixel_values,
            qk_layers=student_layers,
            pixel_mask=batch.pixel_mask,
        )
        t = self.teacher_outputs(batch, teacher_layers, s.image_masks)
        total, logs = self.label_terms(s.logits, t["logits"], batch)
        text_mask = batch.attention_mask
        t2i_sum = i2t_sum = 0.0
        for j, cross in enumerate(t["cross"]):  # one pass per image (NLVR has two); cross: sorted teacher layers
            # padded images (the aspect-ratio pipeline of real ViLT folders): padding patches are neither keys of
            # the text queries nor queries of their own; None when every image token is real
            image_mask = s.image_masks[j] if s.image_masks else None
            for lt, lq, lk in pairs:
                t_t2i, t_i2t = cross[teacher_layers.index(lt)]
                s_t2i, s_i2t = losses.student_cross_scores(s.qk_text[lq], s.qk_image[j][lk])
                # text queries (padding excluded) over image keys; image queries over the real text keys
                t2i_sum = t2i_sum + losses.attention_kl(s_t2i, t_t2i, key_mask=image_mask, query_mask=text_mask)
                i2t_sum = i2t_sum + losses.attention_kl(s_i2t, t_i2t, key_mask=text_mask, query_mask=image_mask)
        total = total + c.t2i * t2i_sum + c.i2t * i2t_sum
        logs.update({"t2i": float(t2i_sum.detach()), "i2t": float(i2t_sum.detach())})
        return total, logs


def check_layers(config: DiDEConfig, teacher, size: dict) -> tuple[pairing.Pair, ...]:
    """The run's layer pairing against the teacher's depth and the student's (`TrainConfig.size`)."""
    return pairing.resolve(config.layer_map, config.layers, **pairing.depths(teacher, size))


def run_dide(cfg: TrainConfig, config: DiDEConfig, resume: bool = False, progress: bool = True) -> dict:
    teacher, cfg = load_fusion_teacher(cfg)
    cfg = replace(cfg, recipe_args=asdict(config))
    check_layers(config, teacher, cfg.size)  # an impossible pairing fails here, before any stage trains
    if isinstance(config, PRETRAIN_CONFIGS):
        cfg = run_pretrain_stage(cfg, config, teacher, resume=resume, progress=progress)
    objective = DiDEObjective(cfg.recipe, config, teacher)
    try:
        return train(cfg, recipe=objective, resume=resume, progress=progress)
    finally:
        objective.finish()


def run_pretrain_stage(cfg: TrainConfig, config, teacher, resume: bool = False, progress: bool = True) -> TrainConfig:
    """Stage 1 in `<out>/pretrain` (skipped when its model is there); returns stage 2's config, starting from it."""
    stage1 = pretrain_config(cfg, config)
    if isinstance(config, DiDEPretrainConfig):
        stage_teacher = load_matching_teacher(config, cfg)
        objective = DiDEObjective("dide", matching_stage(config), stage_teacher)
    else:  # the ablation: the task teacher's attention on the captions, the gold match labels
        objective = DiDEObjective("dide", task_attention_stage(config), one_image_view(teacher))
    check_layers(objective.config, objective.teacher, cfg.size)  # against the stage teacher's depth
    if not (Path(stage1.out) / "model" / "workbench.json").exists():
        train(stage1, recipe=objective, resume=resume, progress=progress)
    else:  # a finished stage is kept only while its teachers are the ones it learned from
        now = teachers_of(stage1, objective.name)  # stage 1's config holds its objective's settings
        refuse_changed(Path(stage1.out), changed_teachers(Path(stage1.out), now=now))
    return replace(cfg, init_from=str(Path(stage1.out) / "model"))


def _stage_fields(config: DiDEConfig) -> dict:
    # the stage's captions have their own teacher outputs: no cache (the task's cache is keyed by the task's data)
    fields = {k: v for k, v in asdict(config).items() if k in DiDEConfig.__dataclass_fields__}
    return {**fields, "teacher_cache": None}


def matching_stage(config: DiDEPretrainConfig) -> DiDEConfig:
    """Stage 1 of `dide-pt`: the matching teacher's soft match labels (KL of its two-way match distribution
    to the student's, at `temperature`) and its attention at the same layer pairing; no gold labels."""
    return DiDEConfig(**{**_stage_fields(config), "hard": 0.0, "soft": 1.0})


def task_attention_stage(config: DiDETaskAttnPretrainConfig) -> DiDEConfig:
    """Stage 1 of the `dide-pt-task-attn` ablation: gold match labels plus the task teacher's attention (the
    task teacher has no matching head: its answer logits are not distilled on captions)."""
    return DiDEConfig(**{**_stage_fields(config), "hard": 1.0, "soft": 0.0})


def load_matching_teacher(config: DiDEPretrainConfig, cfg: TrainConfig):
    """The stage-1 teacher of `dide-pt`, checked before anything trains: a fusion checkpoint whose labels are
    the matching labels of `pretrain_dataset` (one image), with the student's width, heads and patch grid
    (attention maps compare head by head and patch by patch) and the task teacher's tokenizer (stage 2 reads
    the same token ids)."""
    from workbench.models.io import load_checkpoint

    if not config.pretrain_teacher:
        raise WorkbenchError(
            "dide-pt distils a matching teacher in its first stage: give --pretrain-teacher (a fusion checkpoint "
            "with an image-text matching head, e.g. assets/shapes-itm-teacher)"
        )
    ck = load_checkpoint(config.pretrain_teacher, kind="fusion")
    check_teacher_fits(ck, config.pretrain_dataset)
    have, want = student_size(ck.model), cfg.size
    keys = ("hidden_size", "num_heads", "patch_size", "image_size", "conv_stem")
    differ = {k: (have.get(k), want.get(k)) for k in keys if have.get(k) != want.get(k)}
    if differ:
        what = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in differ.items())
        raise CheckpointError(
            f"the matching teacher {ck.path} does not fit the student ({what}, teacher vs student): its "
            "attention is distilled head by head and patch by patch"
        )
    if cfg.teacher and not reads_alike(load_checkpoint(cfg.teacher).tokenizer.get_vocab(), ck.tokenizer.get_vocab()):
        raise CheckpointError(
            f"the matching teacher {ck.path} and the task teacher {cfg.teacher} tokenize differently: every token "
            "of the matching teacher's vocabulary must have the same id in the task teacher's"
        )
    return ck.model


def reads_alike(task_vocab: dict, matching_vocab: dict) -> bool:
    """Whether the task teacher's vocabulary gives every token of the matching teacher's the same id. The
    reworded vocabulary appends words and never renumbers (`workbench.data.vocab`), so a matching teacher of the
    default vocabulary reads the captions' ids exactly as the student, which keeps the task teacher's tokenizer
    through both stages."""
    return all(task_vocab.get(token) == i for token, i in matching_vocab.items())


def pretrain_config(cfg: TrainConfig, config) -> TrainConfig:
    """The matching stage's run: `pretrain_steps` on `pretrain_dataset` in `<out>/pretrain` (`dide-pt`: from the
    matching teacher, whose folder gives the run its pixels, the task teacher's as checked; the tokenizer is the
    task teacher's, which stage 2 continues with)."""
    steps = config.pretrain_steps
    stage = matching_stage(config) if isinstance(config, DiDEPretrainConfig) else task_attention_stage(config)
    return replace(
        cfg,
        dataset=config.pretrain_dataset,
        out=str(Path(cfg.out) / STAGE_DIR),
        recipe="dide",
        teacher=getattr(config, "pretrain_teacher", None) or cfg.teacher,
        tokenizer_from=cfg.teacher,  # stage 2 continues this model: it reads the task teacher's token ids
        epochs=1,
        max_steps=steps,
        train_size=steps * cfg.batch_size,
        val_size=min(cfg.val_size, 600),
        test_size=600,
        init_from=None,
        data_root=None,  # the captions are generated; the task's data root is not theirs
        paraphrase=False,  # nor are they reworded: the caption sets have one wording
        curriculum=[],  # the task's curriculum and oversampling name the task's question types, not the captions'
        oversample={},
        recipe_args=asdict(stage),
    )


def one_image_view(teacher):
    """The teacher as it reads one image (the ablation's captions): an NLVR teacher keeps its encoder and its
    first image's type embedding. Only its attention is distilled there, so its head is unused."""
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
        summary="DiDE with its pre-training stage: a matching teacher's soft match labels and attention on "
        "image-caption pairs, then dide fine-tuning",
        task="answer",
        student="dual",
        Config=DiDEPretrainConfig,
        run=run_dide,
    )
)
register(
    Method(
        name="dide-pt-task-attn",
        summary="ablation of dide-pt: the task teacher's attention on captions with gold match labels (no "
        "matching teacher), then dide fine-tuning",
        task="answer",
        student="dual",
        Config=DiDETaskAttnPretrainConfig,
        run=run_dide,
    )
)
