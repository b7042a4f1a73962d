"""`workbench pretrain-mae`: MAD's vision teacher, a masked autoencoder pre-trained on unlabelled scenes."""

from __future__ import annotations

import argparse

from workbench.cli.options import Option, add_options, build, given

NAME = "pretrain-mae"
HELP = "pre-train MAD's vision teacher: a masked autoencoder (ViTMAE) on unlabelled shapes scenes"
OPTIONS = {
    "steps": Option("optimizer steps (a fresh batch of scenes each)"),
    "patch_size": Option("MAE patch size in pixels (see workbench/mae.py)"),
    "save_every": Option("save the training state every N steps"),
    "image_size": Option("scene size in pixels"),
    "mask_ratio": Option("share of the patches masked"),
}


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.mae import MAEConfig

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Pre-train a small ViTMAE (128 wide, 4 layers, 4 heads, 8-px patches, mask ratio 0.75) on "
        "generated shapes scenes, images only (no questions, no labels; train-split layouts). Writes OUT as a "
        "Hugging Face folder (config.json, model.safetensors, preprocessor_config.json) plus workbench.json "
        "(kind mae, steps, final reconstruction loss); OUT/state holds the training state until it finishes "
        "(--resume continues it). Used by `workbench distill --recipe mad --vision-teacher OUT`.",
    )
    p.add_argument("--out", required=True, help="output folder (e.g. assets/shapes-mae)")
    dests = add_options(p.add_argument_group("pre-training options (MAEConfig; workbench/mae.py)"), MAEConfig,
                        options=OPTIONS)  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run, mae_dests=dests)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.mae import MAEConfig, pretrain_mae

    config = build(MAEConfig, given(args, args.mae_dests))
    meta = pretrain_mae(
        args.out, config.steps, config.batch_size, config.seed, progress=not args.no_progress, resume=args.resume,
        config=config,
    )  # fmt: skip
    print(f"wrote {args.out}: {meta['steps']} steps, final reconstruction loss {meta['final_loss']:.4f}")
