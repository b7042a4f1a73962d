"""`workbench explain`: attention maps, rollout, relevancy, Integrated Gradients and deletion curves of one
prediction, for a checkpoint or a teacher and student side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "explain"
HELP = "explain a prediction: attention maps, rollout, relevancy, Integrated Gradients, deletion curves"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.explain.inputs import BASELINES
    from workbench.explain.maps import METHODS

    p = sub.add_parser(
        NAME,
        help=HELP,
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
    p.add_argument("--methods", nargs="*", choices=METHODS, help="default: all of them")
    p.add_argument("--word", default=None, help="question word for the per-word maps (default: the last word)")
    p.add_argument("--layer", type=int, default=-1, help="layer of the raw attention maps (default: the last)")
    p.add_argument("--baseline", default="mean", choices=BASELINES, help="removed patches")
    p.add_argument("--ig-steps", type=int, default=32, help="Integrated Gradients steps")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
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
