"""Masked-autoencoder pre-training of MAD's vision teacher on unlabelled shapes scenes (images only).

`pretrain_mae(out, steps, ...)` trains `transformers.ViTMAEForPreTraining` and writes `out/` as a Hugging
Face folder (`config.json`, `model.safetensors`, `preprocessor_config.json`) plus `workbench.json`
(kind "mae", steps, final reconstruction loss, settings, time). `VisionTeacher.from_folder(out)` loads it.
While it runs, `out/state/` holds the training state (safetensors + JSON, as `workbench.train`); `resume`
continues exactly (step s always sees the same scenes), and the state is removed once the folder is final.

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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from workbench.data.collate import image_to_tensor
from workbench.data.shapes import ShapesConfig, make_scene, render
from workbench.models.io import write_json_atomic
from workbench.train import _lr_lambda, latest_state, load_state, save_state, set_seed

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
    """Pre-train a ViTMAE on unlabelled shapes scenes into the folder `out` (module docstring).

    `size` overrides the architecture (`MAE_DEFAULTS` keys, e.g. hidden_size=32 for tests). Returns the
    workbench.json metadata."""
    cfg = config or MAEConfig()
    cfg = MAEConfig(**{**asdict(cfg), "steps": steps, "batch_size": batch_size, "seed": seed})
    out = Path(out)
    state_dir = out / "state"
    saved = latest_state(state_dir)
    if (out / "workbench.json").exists() or (saved and not resume):
        raise FileExistsError(f"{out} already holds a MAE run; choose another --out (or --resume an unfinished one)")
    out.mkdir(parents=True, exist_ok=True)

    set_seed(cfg.seed)
    model = ViTMAEForPreTraining(mae_config(cfg.image_size, cfg.patch_size, cfg.mask_ratio, **size)).train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and "token" not in n]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not (p.ndim >= 2 and "token" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.warmup_steps, cfg.steps))
    start = {"global_step": 0, "recent": [], "seconds": 0.0}
    if resume and saved:
        start = load_state(saved, model, optimizer, scheduler)
    step, recent = start["global_step"], list(start["recent"])
    t0 = time.time() - start["seconds"]

    def checkpoint() -> None:
        save_state(
            state_dir, model, optimizer, scheduler,
            {"global_step": step, "recent": recent, "seconds": time.time() - t0},
        )  # fmt: skip

    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc="mae", disable=not progress)
    for step_index in bar:
        pixels = scene_images(step_index * cfg.batch_size, cfg.batch_size, cfg.image_size, cfg.seed)
        loss = model(pixel_values=pixels).loss  # masks drawn from torch's RNG, restored on resume
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step = step_index + 1
        recent = (recent + [loss.item()])[-50:]
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            checkpoint()
    bar.close()

    meta = {
        "kind": "mae",
        "steps": step,
        # mean MSE on masked patches (pixels in [-1, 1]) over the last <= 50 steps
        "final_loss": round(sum(recent) / max(1, len(recent)), 6),
        "train_seconds": round(time.time() - t0, 1),
        "data": f"shapes train-split scenes, generator seed {DATA_SEED_OFFSET + cfg.seed}, images only",
        "settings": asdict(cfg),
        "size": {**MAE_DEFAULTS, **size},
    }
    _write_folder(model, out, meta)
    for leftover in (state_dir, state_dir.with_name("state.old")):
        if leftover.exists():
            shutil.rmtree(leftover)
    return meta


__all__ = ["MAEConfig", "mae_config", "pretrain_mae", "scene_images"]
