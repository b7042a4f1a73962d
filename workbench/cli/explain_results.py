"""`workbench explain-results`: faithfulness of the map methods and teacher-student map agreement."""

from __future__ import annotations

import argparse

from workbench.cli.common import add_publish_option
from workbench.errors import WorkbenchError

NAME = "explain-results"
HELP = "measure faithfulness of the map methods and teacher-student map agreement (docs/results.md)"


def add_parser(sub) -> argparse.ArgumentParser:
    from workbench.explain.inputs import BASELINES
    from workbench.explain.results import AGREEMENT_MAPS, MEASURES

    p = sub.add_parser(
        NAME,
        help=HELP,
        description="On the first N test examples of the teacher's dataset: deletion and insertion AUCs of every map "
        "method (attention, rollout, relevancy, ig) and of random patch order, and the share of examples where a "
        "method's deletion AUC is below random's -> OUT/faithfulness.json; KL and Spearman of each student's maps "
        "against the teacher's, overall and per question type -> OUT/agreement.json: its cross-attention (virtual, "
        "for a dual student: what DiDE trains, so that row reads the training objective back) and the functional "
        "maps (rollout, relevancy, Integrated Gradients). Prints both as markdown tables.",
    )
    p.add_argument("--teacher", default="assets/shapes-vqa-teacher", help="fusion teacher checkpoint folder")
    p.add_argument(
        "--students",
        nargs="+",
        metavar="NAME=PATH",
        default=None,
        help="students to compare (default: dide=assets/shapes-vqa-student none=assets/shapes-vqa-student-none "
        "dide-fast=assets/shapes-vqa-student-fast dide-pt=assets/shapes-vqa-student-dide-pt)",
    )
    p.add_argument("--size", type=int, default=200, help="number of test examples (default 200)")
    p.add_argument("--dataset", default=None, help="default: the one the teacher was trained on (e.g. vqav2 with a "
                   "Hugging Face ViLT teacher)")  # fmt: skip
    p.add_argument("--data-root", default=None, metavar="PATH", help="the folder of a real dataset (docs/real-data.md)")
    p.add_argument("--split", default="test", help="the split measured (default test; VQAv2: its official val)")
    p.add_argument("--out", default="assets/results", help="folder for faithfulness.json and agreement.json")
    p.add_argument("--baseline", default="mean", choices=BASELINES, help="removed patches")
    p.add_argument("--ig-steps", type=int, default=16, help="Integrated Gradients steps")
    p.add_argument("--random-orders", type=int, default=3, help="random patch orders averaged per example")
    p.add_argument(
        "--curve-steps",
        default="patch",
        help="points of each deletion / insertion curve: 'patch' (one per patch, the default: how the shipped "
        "results were measured) or N (fractions 0, 1/N, ..., 1 of the patches; 10: Chefer et al.'s 10%% steps)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the test scenes (0: the shipped test split)")
    p.add_argument("--layer", type=int, default=-1, help="layer of the compared attention maps (default: the last)")
    p.add_argument("--only", choices=MEASURES, default=None, help="measure (and publish) one of the two only")
    p.add_argument("--maps", nargs="+", choices=AGREEMENT_MAPS, default=list(AGREEMENT_MAPS),
                   help="the agreement's maps (default: all; the virtual cross-attention first)")  # fmt: skip
    add_publish_option(p, "the two tables")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> None:
    from workbench.explain.curves import check_steps
    from workbench.explain.results import MEASURES, explain_results, parse_students

    try:
        students = parse_students(args.students)
        curve_steps = check_steps(args.curve_steps)
    except ValueError as e:
        raise WorkbenchError(str(e)) from e
    if args.dataset or args.data_root:
        from workbench.cli.common import check_data_root
        from workbench.models.io import load_checkpoint

        check_data_root(args.dataset or load_checkpoint(args.teacher).meta.get("dataset", ""), args.data_root)
    data = {"dataset": args.dataset, "data_root": args.data_root, "split": args.split}
    explain_results(
        args.teacher, students, size=args.size, out=args.out, readme=args.readme, baseline=args.baseline,
        ig_steps=args.ig_steps, random_orders=args.random_orders, seed=args.seed, layer=args.layer,
        progress=not args.no_progress, data=data, curve_steps=curve_steps,
        measures=(args.only,) if args.only else MEASURES, maps=tuple(args.maps),
    )  # fmt: skip
