"""Masked-autoencoder pre-training of MAD's vision teacher on unlabelled shapes scenes (images only).

`pretrain_mae(out, steps, ...)` trains `transformers.ViTMAEForPreTraining` and writes `out/` as a Hugging
Face folder (`config.json`, `model.safetensors`, `preprocessor_config.json`) plus `workbench.json`
(kind "mae", steps, final reconstruction loss, settings, time). `VisionTeacher.from_folder(out)` loads it.
Training runs through the workbench's one trainer (`workbench.train.Trainer`) with an MAE objective: step s
takes scenes s*B .. (s+1)*B - 1. While it runs, `out/state/` holds the training state (safetensors + JSON);
`resume` continues exactly (step s always sees the same scenes), and the state is removed once the folder is
final.

What is ours (MAD pre-trains its vision teacher on ImageNet; we have no such data and no network):

* Data: scenes from the shapes generator's *train* layouts (never a val / test layout, never a held-out
  colour-shape pair, so the compositional split stays a domain shift for the teacher too), generator seed
  1000 + `seed` (other scenes than the task pairs', which use seed 0), a fresh scene every draw; one scene in
  four has VE's grey cloth. Only pixels are used: no question, caption or label.
* Patches of 8 px, not the student's 16 (the brief suggested 16). A 16-px patch is one grid cell, i.e. one
  whole object, and objects are placed independently: a masked cell cannot be predicted from the visible
  ones, so the reconstruction loss would give the encoder almost nothing to learn from. At 8 px every object
  spans 2 x 2 patches and a masked quarter is predictable from the visible rest of its object (MAE's regime).
  The teacher's 8 x 8 grid is averaged onto the student's 4 x 4 (`VisionTeacher`).
* Size: encoder 128 wide, 4 layers, 4 heads (the student's); decoder 64 wide, 2 layers. Mask ratio 0.75
  (MAE's); pixel loss on raw pixels, not per-patch normalised (colour is what the questions ask about).
  AdamW (betas 0.9 / 0.95, weight decay 0.05, as MAE), lr 1e-3 with linear warm-up and cosine decay.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from workbench.data.collate import image_to_tensor
from workbench.data.shapes import ShapesConfig, make_scene, render
from workbench.models.io import write_json_atomic
from workbench.train.config import TrainConfig
from workbench.train.plan import StreamPlan
from workbench.train.state import latest_state
from workbench.train.trainer import Trainer

DATA_SEED_OFFSET = 1000  # MAE scenes: generator seed 1000 + seed (the task data use 0)
MAE_DEFAULTS = dict(
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=512,
    decoder_hidden_size=64,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=4,
    decoder_intermediate_size=256,
)


@dataclass
class MAEConfig:
    """Everything a pre-training run depends on (saved in workbench.json)."""

    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 0.05
    seed: int = 0
    image_size: int = 64
    patch_size: int = 8
    mask_ratio: float = 0.75
    save_every: int = 500


def mae_config(image_size: int = 64, patch_size: int = 8, mask_ratio: float = 0.75, **size) -> ViTMAEConfig:
    """A small ViTMAE config (defaults: `MAE_DEFAULTS`)."""
    return ViTMAEConfig(
        image_size=image_size,
        patch_size=patch_size,
        mask_ratio=mask_ratio,
        norm_pix_loss=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **{**MAE_DEFAULTS, **size},
    )


def scene_images(start: int, count: int, image_size: int = 64, seed: int = 0) -> torch.Tensor:
    """[count, 3, H, W] in [-1, 1]: unlabelled train-split scenes number start .. start + count - 1."""
    cfg = ShapesConfig(image_size=image_size, seed=DATA_SEED_OFFSET + seed)
    images = []
    for i in range(start, start + count):
        scene = make_scene("train", i, cfg, occluder=i % 4 == 0)
        images.append(image_to_tensor(render(scene, image_size), image_size))
    return torch.stack(images)


def _write_folder(model: ViTMAEForPreTraining, out: Path, meta: dict) -> None:
    model.save_pretrained(out, safe_serialization=True)
    size = model.config.image_size
    # the workbench's pixels are in [-1, 1]: mean = std = 0.5 maps [0, 1] back to them (VisionTeacher)
    preprocessor = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": size, "width": size}}
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    write_json_atomic(out / "workbench.json", meta)
    for f in out.iterdir():  # save_pretrained may write owner-only files; assets are meant to be shared
        if f.is_file():
            f.chmod(0o644)


class MAEObjective:
    """MAE's reconstruction loss (mean squared error on the masked patches); the batch is a tensor of scenes."""

    name = "mae"

    def loss(self, model: ViTMAEForPreTraining, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return model(pixel_values=batch).loss, {}  # masks drawn from torch's RNG, restored on resume


class SceneBatches:
    """`make_batch` for the trainer: ids are scene numbers, consecutive within a batch (`StreamPlan`), so step s
    always sees the same scenes."""

    def __init__(self, image_size: int, seed: int):
        self.image_size, self.seed = image_size, seed

    def __call__(self, ids: range) -> torch.Tensor:
        return scene_images(ids.start, len(ids), self.image_size, self.seed)


def mae_optimizer(model: ViTMAEForPreTraining, cfg: MAEConfig) -> torch.optim.AdamW:
    """AdamW as MAE: betas 0.9 / 0.95, no weight decay on biases, norms and the mask / [CLS] tokens."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "token" not in n]
    other = [p for n, p in params if not (p.ndim >= 2 and "token" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def loop_config(cfg: MAEConfig, out: Path) -> TrainConfig:
    """The trainer's settings for a pre-training run: one epoch of `steps` steps, no metrics.jsonl."""
    return TrainConfig(model="mae", dataset="shapes-scenes", out=str(out), recipe="mae", epochs=1,
                       batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       warmup_steps=cfg.warmup_steps, grad_clip=1.0, seed=cfg.seed, save_every=cfg.save_every,
                       log_every=0)  # fmt: skip


def pretrain_mae(
    out: str | Path,
    steps: int = 10_000,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    config: MAEConfig | None = None,
    **size,
) -> dict:
    """Pre-train a ViTMAE on unlabelled shapes scenes into the folder `out` (module docstring), with the
    workbench's one trainer (`workbench.train.Trainer`).

    `size` overrides the architecture (`MAE_DEFAULTS` keys, e.g. hidden_size=32 for tests). Returns the
    workbench.json metadata."""
    cfg = config or MAEConfig()
    cfg = MAEConfig(**{**asdict(cfg), "steps": steps, "batch_size": batch_size, "seed": seed})
    out = Path(out)
    state_dir = out / "state"
    if (out / "workbench.json").exists() or (latest_state(state_dir) and not resume):
        raise FileExistsError(f"{out} already holds a MAE run; choose another --out (or --resume an unfinished one)")
    out.mkdir(parents=True, exist_ok=True)

    trainer = Trainer(loop_config(cfg, out), MAEObjective(), out, resume=resume, progress=progress)
    model = ViTMAEForPreTraining(mae_config(cfg.image_size, cfg.patch_size, cfg.mask_ratio, **size)).train()
    trainer.setup(model, mae_optimizer(model, cfg), StreamPlan(cfg.steps, cfg.batch_size),
                  SceneBatches(cfg.image_size, cfg.seed))  # fmt: skip
    trainer.fit()

    recent = trainer.recent
    meta = {
        "kind": "mae",
        "steps": trainer.global_step,
        # mean MSE on masked patches (pixels in [-1, 1]) over the last <= 50 steps
        "final_loss": round(sum(recent) / max(1, len(recent)), 6),
        "train_seconds": trainer.seconds(),
        "data": f"shapes train-split scenes, generator seed {DATA_SEED_OFFSET + cfg.seed}, images only",
        "settings": asdict(cfg),
        "size": {**MAE_DEFAULTS, **size},
    }
    if trainer.is_main:
        _write_folder(trainer.final_model(), out, meta)
        for leftover in (state_dir, state_dir.with_name("state.old")):
            if leftover.exists():
                shutil.rmtree(leftover)
    trainer.accelerator.wait_for_everyone()
    return meta


__all__ = ["MAEConfig", "MAEObjective", "SceneBatches", "mae_config", "mae_optimizer", "pretrain_mae", "scene_images"]
