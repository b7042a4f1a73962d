"""`workbench explain`: attention maps, rollout, relevancy, Integrated Gradients and deletion curves of one
prediction, for a checkpoint or a teacher and student side by side."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from workbench.errors import WorkbenchError

NAME = "explain"
HELP = "explain a prediction: attention maps, rollout, relevancy, Integrated Gradients, deletion curves"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.explain.inputs import BASELINES
    from workbench.explain.maps import METHODS
    from workbench.models.precision import PRECISIONS

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Explain one question about one image for a checkpoint, or a teacher and a student side by side "
        "(one colour scale): raw text-to-image / image-to-text attention (the student's virtual cross-attention), "
        "attention rollout, gradient-weighted relevancy, Integrated Gradients, and deletion / insertion curves. "
        "Writes OUT/explain.html (every figure, self-contained), one HTML file per figure, OUT/explain.json "
        "(answers, maps, AUCs, agreement) and PNGs if kaleido is installed.",
    )
    p.add_argument("checkpoint", help="checkpoint folder (teacher or student; ours or a Hugging Face ViLT folder)")
    p.add_argument("image", nargs="?", default=None, help="image file (or an example of a split: --index)")
    p.add_argument("question", nargs="?", default=None)
    example = p.add_argument_group("an example of a dataset split instead of IMAGE QUESTION")
    example.add_argument("--index", type=int, default=None, help="the example's index in the split")
    example.add_argument("--dataset", default=None, help="default: the one the checkpoint was trained on")
    example.add_argument(
        "--data-root",
        default=None,
        metavar="PATH",
        help="the folder of a real dataset (default: the checkpoint's own, if it records one)",
    )
    example.add_argument("--split", default="val", help="default: val (VQAv2's official val, SNLI-VE and NLVR2 dev)")
    p.add_argument("--student", default=None, help="a second checkpoint to compare with (e.g. a distilled student)")
    p.add_argument("--out", default="explain", help="output folder (default: ./explain)")
    p.add_argument("--methods", nargs="*", choices=METHODS, help="default: all of them")
    p.add_argument("--word", default=None, help="question word for the per-word maps (default: the last word)")
    p.add_argument("--layer", type=int, default=-1, help="layer of the raw attention maps (default: the last)")
    p.add_argument("--baseline", default="mean", choices=BASELINES, help="removed patches")
    p.add_argument(
        "--ig-steps",
        type=int,
        default=16,
        help="Integrated Gradients steps (Captum's Gauss-Legendre quadrature)",
    )
    p.add_argument(
        "--curve-steps",
        default="10",
        help="points of the deletion / insertion curves: N samples 0, 1/N, ..., all of the patches (default 10: "
        "every 10%%, Chefer et al.'s perturbation test), 'patch' every patch (one forward pass per patch: slow)",
    )
    p.add_argument("--random-orders", type=int, default=2, help="random patch orders averaged for the chance curve")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="arithmetic of the curves' and Integrated Gradients' forward passes (the other maps are always fp32): "
        "auto = bf16 autocast for a model of 20 M parameters or more on hardware with native bf16 (about 3x "
        "faster at ViLT-B/32 size on a CPU with AVX-512 BF16), else fp32",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.explain.maps import METHODS
    from workbench.explain.report import explain_models, write_report
    from workbench.models.io import load_checkpoint

    started = time.perf_counter()
    models = {}
    for path in [args.checkpoint, *([args.student] if args.student else [])]:
        ck = load_checkpoint(path, device="cpu")
        name = "teacher" if ck.meta["kind"] == "fusion" else "student"
        models[name if name not in models else f"{name} ({Path(path).name})"] = ck
    from workbench.explain.curves import check_steps

    try:
        curve_steps = check_steps(args.curve_steps)
    except ValueError as e:
        raise WorkbenchError(str(e)) from e
    first = next(iter(models.values()))
    images, question, example = _inputs(args, first)
    methods = tuple(args.methods or METHODS)
    if len(images) > 1 and "ig" in methods:  # Integrated Gradients runs the patch layer once: one image only
        if args.methods:
            raise WorkbenchError("--methods ig explains one-image models only; this one takes two images")
        methods = tuple(m for m in methods if m != "ig")
    report = explain_models(
        models, images[0], question, methods, word=args.word, layer=args.layer, baseline=args.baseline,
        ig_steps=args.ig_steps, second_image=images[1] if len(images) > 1 else None, curve_steps=curve_steps,
        random_orders=args.random_orders, precision=args.precision,
    )  # fmt: skip
    for name, m in report["summary"]["models"].items():
        aucs = "  ".join(f"{k} {v['deletion']:.3f}" for k, v in m["faithfulness"].items())
        rand = m["random"]["deletion"]
        rand = "" if rand is None else f"  random {rand:.3f}"
        print(f"{name}: {m['answer']} ({m['confidence']:.1%});  deletion AUC: {aucs}{rand}")
        print(f"  {_timing(m['seconds'])}; curves and IG in {m['precision']}")
    for method, a in report["summary"].get("agreement", {}).items():
        print(f"teacher-student agreement, {method}: KL {a['kl']:.3f}, Spearman {a['spearman']:.3f}")
    written = write_report(report, args.out)
    if example is not None:  # which example of which split was explained, and its gold answer
        (Path(args.out) / "example.json").write_text(json.dumps(example, indent=2))
    print(f"wrote {written[0]} and {len(written) - 1} more files in {args.out} ({time.perf_counter() - started:.1f} s)")


def _timing(seconds: dict) -> str:
    """One line: each method's seconds (its map + its curves) and the total."""
    parts = [
        f"{m} {t['map'] + t['curves']:.1f} s (map {t['map']:.1f} + curves {t['curves']:.1f})"
        for m, t in seconds.items()
    ]
    total = sum(t["map"] + t["curves"] for t in seconds.values())
    return f"time: {', '.join(parts)}; total {total:.1f} s"


def _inputs(args: argparse.Namespace, ck) -> tuple[list, str, dict | None]:
    """(the images, the question, what the example is or None): IMAGE QUESTION, or the example `--index` of a
    split (read as `workbench eval` reads it: a real dataset from --data-root in the checkpoint's class order)."""
    if args.index is None:
        if args.image is None or args.question is None:
            raise WorkbenchError("give IMAGE QUESTION, or --index N for an example of a split (with --dataset)")
        return [args.image], args.question, None
    if args.image is not None:
        raise WorkbenchError("give either IMAGE QUESTION or --index, not both")
    from workbench.cli.evaluate import load_data, recorded_data_root

    dataset = args.dataset or ck.meta.get("dataset")
    if dataset is None:
        raise WorkbenchError(f"{ck.path} does not say which dataset it was trained on: pass --dataset")
    data = load_data(ck, dataset, args.split, args.index + 1, args.data_root or recorded_data_root(ck, dataset))
    if args.index >= len(data):
        raise WorkbenchError(f"{dataset} {args.split} has {len(data)} examples; --index {args.index} is not one")
    example = data[args.index]
    gold = data.labels[example.label] if 0 <= example.label < len(data.labels) else "(no answer in the vocabulary)"
    print(f"{dataset} {args.split} #{args.index} ({example.qtype}): {example.text!r}; gold answer: {gold}")
    info = {"dataset": dataset, "split": args.split, "index": args.index, "qtype": example.qtype,
            "question": example.text, "gold": gold}  # fmt: skip
    return list(example.images), example.text, info
