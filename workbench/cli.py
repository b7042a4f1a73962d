"""`workbench` command line: one subcommand per stage, each with `--help`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.data import DATASETS, RETRIEVAL_DATASETS
from workbench.data.easy_vqa import TEACHER_CURRICULUM as EASY_VQA_TEACHER_CURRICULUM
from workbench.data.easy_vqa import TEACHER_OVERSAMPLE as EASY_VQA_TEACHER_OVERSAMPLE
from workbench.errors import WorkbenchError

# The shipped defaults: dataset -> (model, out folder, training settings). `workbench rebuild`
# retrains them all; each line is also the documented command for one checkpoint.
_COMMON = dict(model="fusion", batch_size=64, lr=7e-4, warmup_steps=300)
# fresh generated scenes every step; 16-pixel patches = one grid cell = one object
_SHAPES = dict(_COMMON, train_size=128_000, val_size=1200, test_size=3000)
DEFAULTS = {
    "shapes-vqa": dict(_SHAPES, epochs=4),
    # 3,600 training images (x4 flips); 8-pixel patches: at 16 px shape questions crawled (53% after 3 epochs).
    # Shape needs a conv stem and a curriculum: shape questions alone first (in the full mix they stayed near
    # chance), then with colour, then everything. The text side and transformer start from the
    # shapes-vqa teacher (`warm_start`; the stem, patch projection and answers are new): from scratch the model
    # never learned to match a colour word against the image (94.7%; README "easy-VQA: what it took"). The
    # rare yes/no kinds are oversampled (why: `data.easy_vqa.TEACHER_OVERSAMPLE`)
    "easy-vqa": dict(
        _COMMON,
        # the curriculum's phases end once learned (`data.easy_vqa.TEACHER_CURRICULUM`); the steps they leave go
        # to the mix, which runs into a second epoch and stops at 3,700 steps (~18 min on two threads)
        epochs=2,
        max_steps=3700,
        warmup_steps=100,  # seed 2's shape phase passed its gate at step 770 with this, at 869 with 300
        val_size=2000,
        size={"patch_size": 8, "conv_stem": [16, 32]},
        curriculum=EASY_VQA_TEACHER_CURRICULUM,
        warm_start="shapes-vqa-teacher",
        oversample=EASY_VQA_TEACHER_OVERSAMPLE,
        # pinned, so a rebuild is deterministic (the step's floating-point sums depend on the thread count)
        threads=2,
    ),
    # curriculum: starts from the shapes-vqa teacher (from scratch, "same row / column" relations stayed
    # at 57% after 6,000 steps; from the VQA teacher they are at 100% by step 2,000)
    "shapes-ve": dict(_SHAPES, epochs=3, init_from="shapes-vqa-teacher"),
    # two images per statement; the same curriculum (the second image's type embedding starts as the first's)
    "shapes-nlvr": dict(_SHAPES, epochs=1, train_size=192_000, max_steps=3000, init_from="shapes-vqa-teacher"),
}


def _add_train_args(
    p: argparse.ArgumentParser,
    datasets: tuple[str, ...] = tuple(d for d in DATASETS if d not in RETRIEVAL_DATASETS),  # distill-retrieval
    default: str = "shapes-vqa",
) -> None:
    p.add_argument("--dataset", default=default, choices=list(datasets), help="training data")
    p.add_argument("--out", required=True, help="run folder: state/, metrics.jsonl, model/ (the final checkpoint)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="examples per epoch (shapes: distinct generated scenes; default 120000)",
    )
    p.add_argument("--val-size", type=int, default=2000)
    p.add_argument("--test-size", type=int, default=None, help="test examples for the final metrics (default: all)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (split across processes)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps (0: each epoch)")
    p.add_argument("--log-every", type=int, default=50, help="a loss record in metrics.jsonl every N steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    p.add_argument("--hidden-size", type=int, default=None)
    p.add_argument("--num-layers", type=int, default=None)
    p.add_argument("--num-heads", type=int, default=None)
    p.add_argument("--patch-size", type=int, default=None, help="image patch size in pixels (default 16)")
    p.add_argument(
        "--conv-stem",
        type=int,
        nargs="+",
        default=None,
        metavar="CHANNELS",
        help="a convolutional stem before the patch projection: conv 3x3 -> ReLU -> max-pool 2 per channel count "
        "(e.g. 16 32); the token grid stays that of --patch-size (see workbench/models/stem.py)",
    )
    p.add_argument(
        "--curriculum",
        nargs="+",
        default=[],
        metavar="QTYPES:STEPS",
        help="phases that open the first epoch, each training only on these question types, e.g. "
        "shape:600 shape,colour:400 (what the easy-VQA teacher needs to learn shape); ':balanced' draws the "
        "names in turn; ':until=0.97' makes STEPS a cap and ends the phase once 25 batches in a row average "
        "that training accuracy (the steps left go to the mix; the run still ends at --max-steps)",
    )
    p.add_argument(
        "--oversample",
        nargs="+",
        default=[],
        metavar="TAG:K",
        help="draw every training example with this question type or tag K times per epoch (same number of steps), "
        "e.g. not-colour-present:4 for easy-VQA's rarest yes/no kind",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the run (default: torch's setting)")
    p.add_argument(
        "--init-from", default=None, help="start from this checkpoint's weights (a new head if its labels differ)"
    )
    p.add_argument(
        "--warm-start",
        default=None,
        help="build the model from the size options, then copy every weight of this checkpoint whose name and "
        "shape fit (e.g. another image front end: the text side and transformer come from the checkpoint)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def _train_config(args, model: str):
    from workbench.train import TrainConfig, parse_curriculum, parse_oversample

    size = {
        k: v
        for k, v in (
            ("hidden_size", args.hidden_size),
            ("num_layers", args.num_layers),
            ("num_heads", args.num_heads),
            ("patch_size", args.patch_size),
            ("conv_stem", args.conv_stem),
        )
        if v is not None
    }
    return TrainConfig(
        model=model,
        dataset=args.dataset,
        out=args.out,
        epochs=args.epochs,
        train_size=args.train_size,
        val_size=args.val_size,
        test_size=args.test_size,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        save_every=args.save_every,
        log_every=args.log_every,
        init_from=args.init_from,
        warm_start=args.warm_start,
        max_steps=args.max_steps,
        curriculum=parse_curriculum(args.curriculum),
        oversample=parse_oversample(args.oversample),
        threads=args.threads,
        size=size,
    )


def cmd_train(args) -> None:
    from workbench.train import train

    train(_train_config(args, args.model), resume=args.resume, progress=not args.no_progress)


def cmd_distill(args) -> None:
    from workbench.distill.mad import MAD_VARIANTS, mad_config
    from workbench.distill.recipes import DistillWeights
    from workbench.distill.run import distill

    cfg = _train_config(args, "dual")
    cfg.teacher, cfg.recipe = args.teacher, args.recipe
    for tower in ("text_layers", "image_layers"):  # a shallower tower than the teacher's depth
        if getattr(args, tower, None):
            cfg.size[tower] = getattr(args, tower)
    if args.recipe in MAD_VARIANTS:  # a fusion student from unimodal teachers (workbench/distill/mad.py)
        mad = mad_config(
            args.recipe,
            k=args.mad_k,
            feature_weight=args.w_feature,
            feature_loss=args.feature_loss,
            probe_size=args.probe_size,
            text_teacher=None if args.text_teacher == "none" else args.text_teacher,
            vision_teacher=None if args.vision_teacher == "none" else args.vision_teacher,
        )
        distill(cfg, resume=args.resume, progress=not args.no_progress, mad=mad)
        return
    if not args.teacher:
        raise WorkbenchError(f"recipe {args.recipe!r} distils a fusion teacher: pass --teacher")
    weights = DistillWeights(
        hard=args.w_hard, soft=args.w_soft, t2i=args.w_t2i, i2t=args.w_i2t, temperature=args.temperature
    )
    distill(
        cfg,
        weights,
        tuple(args.layers),
        resume=args.resume,
        progress=not args.no_progress,
        pretrain_steps=args.pretrain_steps,
    )


def cmd_pretrain_mae(args) -> None:
    from workbench.mae import MAEConfig, pretrain_mae

    config = MAEConfig(
        lr=args.lr, warmup_steps=args.warmup_steps, patch_size=args.patch_size, save_every=args.save_every
    )
    meta = pretrain_mae(
        args.out, args.steps, args.batch_size, args.seed, progress=not args.no_progress, resume=args.resume,
        config=config,
    )  # fmt: skip
    print(f"wrote {args.out}: {meta['steps']} steps, final reconstruction loss {meta['final_loss']:.4f}")


def cmd_eval(args) -> None:
    from workbench.data import Collator, load_dataset
    from workbench.evaluate import evaluate, format_metrics, write_metrics
    from workbench.models.io import load_checkpoint

    ck = load_checkpoint(args.checkpoint, device=args.device)
    dataset = args.dataset or ck.meta.get("dataset")
    if dataset is None:
        raise WorkbenchError("this checkpoint does not say which dataset it was trained on: pass --dataset")
    data = load_dataset(dataset, args.split, args.size)
    metrics = evaluate(ck.model, data, Collator.for_model(ck.model, ck.tokenizer), progress=True)
    metrics.update({"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split})
    print(format_metrics(metrics))
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval-{dataset}-{args.split}.json"
    write_metrics(metrics, out)
    print(f"wrote {out}")


def cmd_ask(args) -> None:
    from workbench.api import ask, load_model

    model = load_model(args.checkpoint)
    answer = ask(model, args.image, args.question, top_k=args.top_k)
    print(json.dumps(answer, indent=2))


# MAD variants (workbench/distill/mad.py: MAD_VARIANTS; listed here so --help does not import torch)
MAD_RECIPES = ("mad", "mad-naive", "mad-no-select", "mad-no-conf")

# shipped students: the dide seed-0 runs of the DiDE grid (`workbench experiment dide` shares them)
STUDENTS = ("shapes-vqa", "shapes-ve", "easy-vqa", "shapes-nlvr")
# every shipped student folder: one per task, and the one-layer-text-tower student of the Speed section
STUDENT_NAMES = (*(f"{t}-student" for t in STUDENTS), "shapes-vqa-student-fast")


def _student_run(name: str):
    """The DiDE grid run a shipped student folder is copied from."""
    from workbench.distill.experiment import FAST_STUDENT, Run

    return FAST_STUDENT if name == "shapes-vqa-student-fast" else Run(name.removesuffix("-student"), "dide")


def cmd_rebuild(args) -> None:
    from workbench.distill.experiment import run_grid
    from workbench.train import TrainConfig, train

    names = args.only or [*DEFAULTS, *STUDENT_NAMES]
    for name in names:
        if name in STUDENT_NAMES:
            run = _student_run(name)
            root = Path(args.runs) / "dide"
            print(f"== distilling the {run.task} student into {root / run.task / run.name}")
            run_grid(root, Path(args.assets), runs=(run,), progress=not args.no_progress)
            ship(Path(run.config(root, Path(args.assets)).out) / "model", Path(args.assets) / name)
            continue
        settings = dict(DEFAULTS[name])
        for key in ("init_from", "warm_start"):  # a shipped checkpoint built earlier in this loop
            if key in settings:
                settings[key] = str(Path(args.assets) / settings[key])
        out = Path(args.runs) / f"{name}-teacher"
        cfg = TrainConfig(dataset=name, out=str(out), **settings)
        print(f"== training the {name} teacher into {out}")
        train(cfg, resume=args.resume, progress=not args.no_progress)
        ship(out / "model", Path(args.assets) / f"{name}-teacher")
    from workbench.data.samples import write_samples

    write_samples(Path(args.assets) / "samples")


def ship(model_dir: Path, dest: Path) -> None:
    """Copy a trained checkpoint folder into assets/ (replacing the old one)."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model_dir, dest)
    print(f"shipped {dest}")


def cmd_report(args) -> None:
    from workbench.report import teacher_table, update_readme

    if args.readme:
        changed = update_readme(args.readme, args.assets)
        print(f"{'updated' if changed else 'unchanged'}: {args.readme}")
    else:
        print(teacher_table(args.assets))


def _publish(table: str, out, readme: str | None, section: str) -> None:
    """Print a results table and where its JSON went; with --readme, write it into that README section."""
    from workbench.report import replace_section

    print(table)
    print(f"wrote {out}")
    if readme:
        changed = replace_section(readme, section, table)
        print(f"{'updated' if changed else 'unchanged'}: {readme}")


def cmd_experiment(args) -> None:
    from workbench.distill import experiment

    if args.name == "mcad":
        return cmd_experiment_mcad(args)
    if args.name == "mad":
        return cmd_experiment_mad(args)
    root, assets = Path(args.runs or "runs/dide"), Path(args.assets)
    out = assets / "results" / "dide.json"
    previous = json.loads(out.read_text()) if out.exists() else None
    if not args.collect:
        experiment.run_grid(
            root, assets, tasks=tuple(args.tasks or ()), progress=not args.no_progress, previous=previous
        )
    results = experiment.collect(root, assets, previous=previous)
    experiment.write_results(results, out)
    table = experiment.results_table(results)
    _publish(table, out, args.readme, "dide")


# MAD grid settings (workbench/distill/mad_experiment.py: SETTINGS; listed here so --help does not import torch)
MAD_SETTINGS = ("low1", "low10", "full")


def cmd_experiment_mad(args) -> None:
    from workbench.distill import mad_experiment as mx

    root, assets = Path(args.runs or "runs/mad"), Path(args.assets)
    out = assets / "results" / "mad.json"
    previous = mx.read_previous(out)
    if not args.collect:  # fails before any training if the MAE teacher (assets/shapes-mae) is missing
        runs = mx.select(mx.GRID, args.tasks, args.settings, args.seeds, args.recipes)
        mx.run_grid(root, assets, runs, progress=not args.no_progress, previous=previous)
    results = mx.collect(root, previous=previous)
    mx.write_results(mx.document(results), out)
    _publish(mx.results_table(results), out, args.readme, "mad")


def cmd_explain(args) -> None:
    from workbench.explain.maps import METHODS
    from workbench.explain.report import explain_models, write_report
    from workbench.models.io import load_checkpoint

    models = {}
    for path in [args.checkpoint, *([args.student] if args.student else [])]:
        ck = load_checkpoint(path, device="cpu")
        name = "teacher" if ck.meta["kind"] == "fusion" else "student"
        models[name if name not in models else f"{name} ({Path(path).name})"] = ck
    methods = tuple(args.methods or METHODS)
    report = explain_models(
        models, args.image, args.question, methods, word=args.word, layer=args.layer, baseline=args.baseline,
        ig_steps=args.ig_steps,
    )  # fmt: skip
    for name, m in report["summary"]["models"].items():
        aucs = "  ".join(f"{k} {v['deletion']:.3f}" for k, v in m["faithfulness"].items())
        rand = m["random"]["deletion"]
        print(f"{name}: {m['answer']} ({m['confidence']:.1%});  deletion AUC: {aucs}  random {rand:.3f}")
    for method, a in report["summary"].get("agreement", {}).items():
        print(f"teacher-student agreement, {method}: KL {a['kl']:.3f}, Spearman {a['spearman']:.3f}")
    written = write_report(report, args.out)
    print(f"wrote {written[0]} and {len(written) - 1} more files in {args.out}")


def cmd_bench(args) -> None:
    from workbench.bench import QUICK, benchmark_pair, speed_table, write_speed

    settings = dict(QUICK) if args.quick else {}
    for key in ("batch_sizes", "retrieval_sizes", "min_run_time", "budget_s"):
        if getattr(args, key) is not None:
            settings[key] = tuple(getattr(args, key)) if key.endswith("sizes") else getattr(args, key)
    results = benchmark_pair(
        args.teacher,
        args.student,
        threads=args.threads,
        runtime="compile" if args.compile else args.runtime,
        device=args.device,
        progress=not args.no_progress,
        **settings,
    )
    out = write_speed(results, args.out)
    table = speed_table(results)
    _publish(table, out, args.readme, "speed")


def cmd_explain_results(args) -> None:
    from workbench.explain.results import explain_results, parse_students

    try:
        students = parse_students(args.students)
    except ValueError as e:
        raise WorkbenchError(str(e)) from e
    explain_results(
        args.teacher, students, size=args.size, out=args.out, readme=args.readme, baseline=args.baseline,
        ig_steps=args.ig_steps, random_orders=args.random_orders, seed=args.seed, layer=args.layer,
        progress=not args.no_progress,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# retrieval: MCAD and its baselines (workbench/distill/mcad.py, workbench/retrieval.py)


def _retrieval_weights(args):
    from workbench.distill.mcad import default_weights

    given = {
        k: getattr(args, k)
        for k in ("contrastive", "kl", "feature", "alpha", "beta", "temperature", "fusion_topk", "feature_loss")
        if getattr(args, k) is not None
    }
    return default_weights(args.recipe, **given)


def cmd_distill_retrieval(args) -> None:
    from workbench.distill.mcad import distill_retrieval

    cfg = _train_config(args, "dual")
    cfg.recipe = args.recipe
    if args.embed_dim is not None:
        cfg.size["embed_dim"] = args.embed_dim
    distill_retrieval(
        cfg, args.dual_teacher, args.fusion_teacher, _retrieval_weights(args), args.resume, not args.no_progress
    )


def cmd_retrieval(args) -> None:
    from workbench.data import load_dataset
    from workbench.models.clip import load_dual_encoder
    from workbench.models.io import write_json_atomic
    from workbench.retrieval import (
        DualEncoder,
        FusionMatcher,
        compare_misses,
        evaluate_retrieval,
        format_retrieval,
        gallery_from,
    )

    ck = load_dual_encoder(args.checkpoint, device=args.device)
    if args.karpathy:
        from workbench.data.formats import KarpathyCaptions

        data, name = KarpathyCaptions(args.karpathy, args.split, images_root=args.images_root), "coco-karpathy"
    else:
        data, name = load_dataset(args.dataset, args.split, args.size or 1000), args.dataset
    other = load_dual_encoder(args.compare, device=args.device) if args.compare else None  # fail before the work
    matcher = FusionMatcher.load(args.rerank, device=args.device) if args.rerank else None
    gallery = gallery_from(data, args.size if args.karpathy else None)
    metrics = evaluate_retrieval(
        DualEncoder(ck.model, ck.tokenizer), gallery, backend=args.backend, rerank=matcher, rerank_k=args.rerank_k,
        progress=not args.no_progress,
    )  # fmt: skip
    metrics.update({"checkpoint": str(args.checkpoint), "dataset": name, "split": args.split})
    if other is not None:
        theirs = evaluate_retrieval(DualEncoder(other.model, other.tokenizer), gallery, timing=False)
        metrics["compared"] = {
            "checkpoint": str(args.compare),
            "r1": theirs["r1"],
            "misses": compare_misses(metrics["misses"], theirs["misses"]),
        }
    print(format_retrieval(metrics))
    out = Path(args.out) if args.out else None
    if out is None:
        folder = Path(args.checkpoint)
        out = (folder if (folder / "workbench.json").exists() else Path(".")) / f"retrieval-{name}-{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, metrics)
    print(f"wrote {out}")


def _add_mcad_grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="full", choices=["full", "smoke"], help="mcad: budgets (smoke: minutes)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="mcad, mad: only these seeds (default: the grid's)"
    )
    p.add_argument(
        "--recipes",
        nargs="+",
        default=None,
        help="mcad: only these recipes; mad: only these rows (none, mad-naive, mad, ...)",
    )
    p.add_argument("--dual-teacher", default=None, help="mcad: use this dual teacher (ours or a CLIP folder)")
    p.add_argument("--fusion-teacher", default=None, help="mcad: use this image-text matching fusion teacher")
    p.add_argument("--results", default=None, help="mcad: results JSON (default: ASSETS/results/mcad.json)")


def cmd_experiment_mcad(args) -> None:
    from workbench.distill import mcad_experiment as mx

    root, assets = Path(args.runs or "runs/mcad"), Path(args.assets)
    seeds = tuple(args.seeds or mx.PRESETS[args.preset]["seeds"])
    runs = mx.grid(seeds, tuple(args.recipes or mx.RECIPES))
    if not args.collect:
        mx.run_grid(root, assets, args.preset, runs, args.dual_teacher, args.fusion_teacher, not args.no_progress)
    results = mx.collect(root, runs)
    out = Path(args.results) if args.results else assets / "results" / "mcad.json"
    mx.write_results(results, out)
    table = mx.results_table(results)
    _publish(table, out, args.readme, "mcad")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Cross-modal knowledge distillation workbench: train a fusion (ViLT) teacher, distill it "
        "into a dual-encoder student, evaluate, and ask questions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a fusion teacher or a dual student on hard labels",
        description="Train a model on hard labels with accelerate (runs under `accelerate launch` "
        "too). Writes OUT/metrics.jsonl, an atomic checkpoint OUT/state each epoch, and "
        "the final checkpoint OUT/model.",
    )
    p.add_argument("--model", default="fusion", choices=["fusion", "dual"], help="fusion teacher or dual student")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "distill",
        help="distill a fusion teacher into a dual-encoder student, or unimodal teachers into a fusion student (MAD)",
        description="Train a dual-encoder student from a fusion teacher. Recipes: none (hard labels only), "
        "kd (soft labels), dide (soft labels + text-to-image and image-to-text attention distillation, "
        "workbench/distill/recipes.py), dide-pt (an image-text matching stage on shapes captions with attention "
        "distillation, then dide). The student takes the teacher's tokenizer, width, depth, heads and patch size. "
        "MAD recipes (mad, mad-naive, mad-no-select, mad-no-conf; workbench/distill/mad.py) train a fusion "
        "student on the task while distilling frozen unimodal teachers' token features into it (--text-teacher, "
        "--vision-teacher; no --teacher); low-shot runs: --train-size 1280 (1%%) or 12800 (10%%).",
    )
    p.add_argument("--teacher", default=None, help="fusion teacher checkpoint folder (e.g. assets/shapes-vqa-teacher)")
    p.add_argument("--recipe", default="dide", choices=["none", "kd", "dide", "dide-pt", *MAD_RECIPES])
    p.add_argument("--pretrain-steps", type=int, default=1000, help="dide-pt: steps of the matching stage")
    p.add_argument("--layers", type=int, nargs="+", default=[-1], help="distilled layers (default: the last)")
    p.add_argument(
        "--text-layers",
        type=int,
        default=None,
        help="student text tower depth (default: the teacher's); with cached image features a query runs only "
        "the text tower and the head, so a shallower text tower answers faster. Distilled layers are counted "
        "per model: -1 is the last layer of each",
    )
    p.add_argument("--image-layers", type=int, default=None, help="student image tower depth (default: the teacher's)")
    p.add_argument("--w-hard", type=float, default=0.0, help="hard-label weight (official DiDE: 0)")
    p.add_argument("--w-soft", type=float, default=1.0, help="soft-label KD weight")
    p.add_argument("--w-t2i", type=float, default=1.0, help="text-to-image attention KD weight")
    p.add_argument("--w-i2t", type=float, default=1.0, help="image-to-text attention KD weight")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument(
        "--text-teacher",
        default="minilm",
        help="MAD: text encoder folder, 'minilm' (the packaged all-MiniLM-L6-v2) or 'none'",
    )
    p.add_argument(
        "--vision-teacher", default="assets/shapes-mae", help="MAD: vision encoder folder (ViTMAE, CLIP, ...) or 'none'"
    )
    p.add_argument("--mad-k", type=int, default=4, help="MAD: image patches kept per instance by token selection")
    p.add_argument("--w-feature", type=float, default=1.0, help="MAD: weight of the feature distillation")
    p.add_argument("--feature-loss", default="cosine", choices=["cosine", "mse"], help="MAD: per-token feature loss")
    p.add_argument("--probe-size", type=int, default=2048, help="MAD: training pairs the confidence probe is fitted on")
    _add_train_args(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser(
        "pretrain-mae",
        help="pre-train MAD's vision teacher: a masked autoencoder (ViTMAE) on unlabelled shapes scenes",
        description="Pre-train a small ViTMAE (128 wide, 4 layers, 4 heads, 8-px patches, mask ratio 0.75) on "
        "generated shapes scenes, images only (no questions, no labels; train-split layouts). Writes OUT as a "
        "Hugging Face folder (config.json, model.safetensors, preprocessor_config.json) plus workbench.json "
        "(kind mae, steps, final reconstruction loss); OUT/state holds the training state until it finishes "
        "(--resume continues it). Used by `workbench distill --recipe mad --vision-teacher OUT`.",
    )
    p.add_argument("--out", required=True, help="output folder (e.g. assets/shapes-mae)")
    p.add_argument("--steps", type=int, default=10_000, help="optimizer steps (a fresh batch of scenes each)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument(
        "--patch-size", type=int, default=8, help="MAE patch size in pixels (default 8; see workbench/mae.py)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=500, help="save the training state every N steps")
    p.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pretrain_mae)

    p = sub.add_parser(
        "experiment",
        help="run a results grid (dide, mcad, mad; resumable) and write assets/results/NAME.json",
        description="Run every unfinished run of the DiDE grid (workbench/distill/experiment.py: recipes none, "
        "kd, dide, dide-pt over seeds and tasks, one layer ablation), then collect mean and std over seeds "
        "into ASSETS/results/dide.json. Start it in several terminals to run runs in parallel: each run is "
        "claimed with a lock file, and an interrupted run resumes from its last checkpoint. `mcad`: the "
        "retrieval grid (workbench/distill/mcad_experiment.py). `mad`: the MAD protocol "
        "(workbench/distill/mad_experiment.py: shapes-vqa and shapes-ve; settings low1, low10, full, the full "
        "runs also tested on the compositional split; rows none, mad-naive, mad, mad-no-select, mad-no-conf; "
        "3 seeds) into ASSETS/results/mad.json; it needs "
        "the MAE vision teacher ASSETS/shapes-mae (`workbench pretrain-mae --out assets/shapes-mae`).",
    )
    p.add_argument("name", choices=["dide", "mcad", "mad"], help="which grid")
    p.add_argument("--runs", default=None, help="where the runs go (default: runs/NAME)")
    p.add_argument("--assets", default="assets")
    p.add_argument("--tasks", nargs="*", help="dide, mad: only runs on these datasets")
    p.add_argument("--settings", nargs="+", choices=MAD_SETTINGS, default=None, help="mad: only runs of these settings")
    p.add_argument("--collect", action="store_true", help="do not train; only gather finished runs")
    p.add_argument("--readme", default=None, help="also write the table into this README's NAME section")
    p.add_argument("--no-progress", action="store_true")
    _add_mcad_grid_args(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser(
        "eval",
        help="accuracy overall and per question type of a checkpoint",
        description="Evaluate a checkpoint folder on a split; prints and writes JSON.",
    )
    p.add_argument("checkpoint", help="checkpoint folder (ours, or a Hugging Face ViLT folder with --dataset)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "compositional"])
    p.add_argument("--size", type=int, default=None, help="number of examples (default: the whole split)")
    p.add_argument("--out", default=None, help="JSON file (default: CHECKPOINT/eval-DATASET-SPLIT.json)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "ask",
        help="ask a checkpoint a question about an image",
        description="Answer a question (VQA) or judge a hypothesis (entailment) about one image.",
    )
    p.add_argument("checkpoint", help="checkpoint folder")
    p.add_argument("image", help="image file (any size, mode; it is converted to RGB and resized)")
    p.add_argument("question")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser(
        "rebuild",
        help="retrain the shipped default checkpoints into assets/",
        description="Retrain the shipped teachers (" + ", ".join(DEFAULTS) + ") with their recorded settings, "
        "then distil the shipped dide students from them (" + ", ".join(STUDENTS) + "), and copy each into "
        "ASSETS. A student run already finished under RUNS/dide is reused: use a fresh --runs to redo all.",
    )
    p.add_argument(
        "--only",
        nargs="*",
        choices=[*DEFAULTS, *STUDENT_NAMES],
        help="rebuild only these (e.g. shapes-vqa shapes-vqa-student)",
    )
    p.add_argument("--runs", default="runs", help="where the training runs go")
    p.add_argument("--assets", default="assets")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser(
        "explain",
        help="explain a prediction: attention maps, rollout, relevancy, Integrated Gradients, deletion curves",
        description="Explain one question about one image for a checkpoint, or a teacher and a student side by side "
        "(one colour scale): raw text-to-image / image-to-text attention (the student's virtual cross-attention), "
        "attention rollout, gradient-weighted relevancy, Integrated Gradients, and deletion / insertion curves. "
        "Writes OUT/explain.html (every figure, self-contained), one HTML file per figure, OUT/explain.json "
        "(answers, maps, AUCs, agreement) and PNGs if kaleido is installed.",
    )
    p.add_argument("checkpoint", help="checkpoint folder (teacher or student)")
    p.add_argument("image", help="image file")
    p.add_argument("question")
    p.add_argument("--student", default=None, help="a second checkpoint to compare with (e.g. a distilled student)")
    p.add_argument("--out", default="explain", help="output folder (default: ./explain)")
    p.add_argument(
        "--methods", nargs="*", choices=["attention", "rollout", "relevancy", "ig"], help="default: all four"
    )
    p.add_argument("--word", default=None, help="question word for the per-word maps (default: the last word)")
    p.add_argument("--layer", type=int, default=-1, help="layer of the raw attention maps (default: the last)")
    p.add_argument("--baseline", default="mean", choices=["mean", "white", "black", "grey"], help="removed patches")
    p.add_argument("--ig-steps", type=int, default=32, help="Integrated Gradients steps")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "bench",
        help="time a teacher and its student: latency, throughput, FLOPs, memory, retrieval scaling",
        description="Benchmark a fusion teacher against its dual student with torch.utils.benchmark (warm-up, fixed "
        "threads, median and IQR): per-query latency (batch 1) and throughput (larger batches) of the teacher, the "
        "student end to end and the student with cached image features; FLOPs (torch.utils.flop_counter), parameters "
        "and peak memory of each; retrieval over N images x N texts (the teacher's N*N joint passes are extrapolated "
        "from measured per-pair cost beyond --budget-s, and marked so). Writes JSON (OUT) and prints markdown tables. "
        "Close other work first: anything else running on the machine slows every path.",
    )
    p.add_argument("--teacher", required=True, help="fusion teacher folder (e.g. assets/shapes-vqa-teacher)")
    p.add_argument("--student", required=True, help="dual student folder (e.g. assets/shapes-vqa-student)")
    p.add_argument("--out", default="assets/results/speed.json", help="JSON file to write (atomically)")
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds; for tests and smoke runs)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 1 8 32 128")
    p.add_argument("--retrieval-sizes", type=int, nargs="*", default=None, help="N of N x N; default: 10 100 1000")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's setting)")
    p.add_argument("--min-run-time", type=float, default=None, help="seconds timed per cell (default 1)")
    p.add_argument(
        "--budget-s", type=float, default=None, help="longest predicted retrieval run still measured (default 60)"
    )
    p.add_argument(
        "--runtime",
        choices=("eager", "compile", "onnx"),
        default="eager",
        help="how the latency / throughput paths run: eager PyTorch, torch.compile (slow to compile), or both models "
        "exported to ONNX Runtime (CPU; the lowest per-call overhead, used for the shipped table)",
    )
    p.add_argument("--compile", action="store_true", help="the same as --runtime compile")
    p.add_argument("--device", default="cpu")
    p.add_argument("--readme", default=None, help="also write the tables into this README's speed section")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "explain-results",
        help="measure faithfulness of the map methods and teacher-student map agreement (README results)",
        description="On the first N test examples of the teacher's dataset: deletion and insertion AUCs of every map "
        "method (attention, rollout, relevancy, ig) and of random patch order, and the share of examples where a "
        "method's deletion AUC is below random's -> OUT/faithfulness.json; KL and Spearman of each student's "
        "cross-attention (virtual, for a dual student) against the teacher's, overall and per question type -> "
        "OUT/agreement.json. Prints both as markdown tables.",
    )
    p.add_argument("--teacher", default="assets/shapes-vqa-teacher", help="fusion teacher checkpoint folder")
    p.add_argument(
        "--students",
        nargs="+",
        metavar="NAME=PATH",
        default=None,
        help="students to compare (default: dide=assets/shapes-vqa-student none=assets/shapes-vqa-student-none)",
    )
    p.add_argument("--size", type=int, default=200, help="number of test examples (default 200)")
    p.add_argument("--out", default="assets/results", help="folder for faithfulness.json and agreement.json")
    p.add_argument("--baseline", default="mean", choices=["mean", "white", "black", "grey"], help="removed patches")
    p.add_argument("--ig-steps", type=int, default=16, help="Integrated Gradients steps")
    p.add_argument("--random-orders", type=int, default=3, help="random patch orders averaged per example")
    p.add_argument("--seed", type=int, default=0, help="seed of the test scenes (0: the shipped test split)")
    p.add_argument("--layer", type=int, default=-1, help="layer of the compared attention maps (default: the last)")
    p.add_argument("--readme", default=None, help="also write the tables into this README's two sections")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_explain_results)

    p = sub.add_parser(
        "report",
        help="print the results table of the shipped checkpoints (or write it into the README)",
        description="Make the markdown table of measured results from assets/*/workbench.json.",
    )
    p.add_argument("--assets", default="assets")
    p.add_argument("--readme", default=None, help="replace the results section of this README instead of printing")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "distill-retrieval",
        help="train a dual encoder for image-text retrieval: CLIP-style, or distilled with MCAD or a baseline",
        description="Train a dual encoder on shapes retrieval captions with a retrieval recipe (workbench/distill/"
        "mcad.py): clip (contrastive only; also trains the dual teacher), clipkd (CLIP-KD feature + relation "
        "distillation), affinity (TinyCLIP affinity mimicking), mcad (the fusion teacher's matching scores injected "
        "into the dual teacher's similarities; distribution + feature distillation + contrastive), mcad-nofused, "
        "mcad-nofeat. Metrics: R@1/5/10 both ways, median rank, index time, query latency, size.",
    )
    recipes = ["clip", "clipkd", "affinity", "mcad", "mcad-nofused", "mcad-nofeat"]
    p.add_argument("--recipe", default="mcad", choices=recipes)
    p.add_argument("--dual-teacher", default=None, help="our dual checkpoint or a Hugging Face CLIP folder")
    p.add_argument(
        "--fusion-teacher", default=None, help="fusion teacher trained on shapes-itm-mixed (mcad, mcad-nofeat)"
    )
    p.add_argument("--embed-dim", type=int, default=None, help="embedding width (default: the dual teacher's, or 128)")
    p.add_argument("--contrastive", type=float, default=None, help="weight of the contrastive loss (recipe default)")
    p.add_argument("--kl", type=float, default=None, help="weight of the row + column KL distillation")
    p.add_argument("--feature", type=float, default=None, help="weight of the feature distillation")
    p.add_argument("--alpha", type=float, default=None, help="weight of the fusion log P(match) in the teacher logits")
    p.add_argument("--beta", type=float, default=None, help="feature injection strength (modified teacher features)")
    p.add_argument("--temperature", type=float, default=None, help="distillation temperature")
    p.add_argument("--fusion-topk", type=int, default=None, help="fusion-scored pairs: top-k per row/column (0: all)")
    p.add_argument("--feature-loss", default=None, choices=["cosine", "mse"])
    _add_train_args(p, datasets=RETRIEVAL_DATASETS, default=RETRIEVAL_DATASETS[0])
    p.set_defaults(func=cmd_distill_retrieval)

    p = sub.add_parser(
        "retrieval",
        help="image-text retrieval metrics of a dual encoder (ours or a CLIP folder): R@K, median rank, speed",
        description="Evaluate a dual encoder on the shapes retrieval gallery or on COCO-Karpathy files from a local "
        "path: image->text and text->image R@1/5/10 and median rank, the time to embed the gallery once into the "
        "index, per-query latency (batch 1) and the model's parameters. --rerank adds a fusion teacher re-ranking "
        "each query's top-k. Writes JSON.",
    )
    p.add_argument("checkpoint", help="dual encoder folder: ours (kind dual) or a Hugging Face CLIP folder")
    p.add_argument("--split", default="test", help="shapes: train/val/test/compositional; Karpathy: train/val/test")
    p.add_argument("--size", type=int, default=None, help="gallery images (default: shapes 1000, Karpathy all)")
    p.add_argument(
        "--dataset",
        default=RETRIEVAL_DATASETS[0],
        choices=RETRIEVAL_DATASETS,
        help="shapes gallery: in groups of a scene and three one-attribute variants (hard), or random scenes",
    )
    p.add_argument("--karpathy", default=None, help="folder with dataset_coco.json (COCO-Karpathy) instead of shapes")
    p.add_argument("--images-root", default=None, help="Karpathy: where the image folders are (default: --karpathy)")
    p.add_argument("--rerank", default=None, help="fusion teacher (shapes-itm-mixed) re-ranking the top-k")
    p.add_argument("--rerank-k", type=int, default=10)
    p.add_argument(
        "--compare",
        default=None,
        help="a second dual encoder (e.g. the teacher): which R@1 misses the two share and which only one makes",
    )
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "faiss"], help="search index")
    p.add_argument("--out", default=None, help="JSON file (default: CHECKPOINT/retrieval-DATASET-SPLIT.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_retrieval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (WorkbenchError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
