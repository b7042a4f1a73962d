"""`workbench eval`: a checkpoint's accuracy on a split, overall and per question type; on VQAv2 the VQA score
overall and per answer type."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.errors import WorkbenchError

NAME = "eval"
HELP = "accuracy overall and per question type of a checkpoint (VQAv2: the VQA score per answer type)"
# test-paraphrase: the test split with every text in a held-out rewording (shapes-vqa, shapes-ve, shapes-nlvr,
# easy-vqa; `workbench.data.paraphrase`); val-paraphrase: the val split in the validation rewordings (shapes-vqa),
# for choosing a recipe without looking at the test ones
GENERATED_SPLITS = ("train", "val", "test", "compositional", "test-paraphrase", "val-paraphrase")


def split_choices() -> list[str]:
    """Every split name a dataset accepts: the generated datasets' and each real reader's own (dev, test1, ...)."""
    from workbench.data.real import READERS

    return list(dict.fromkeys([*GENERATED_SPLITS, *(s for reader in READERS.values() for s in reader.splits)]))


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Evaluate a checkpoint folder on a split; prints and writes JSON. Real datasets (vqav2, snli-ve, "
        "nlvr2) are read from --data-root in the checkpoint's class order, with its image preprocessing; VQAv2 "
        "reports the official VQA accuracy overall and per answer type (yes/no, number, other). A split without "
        "answers (VQAv2 test-dev, test-std) writes the predictions in the evaluation server's format instead.",
    )
    p.add_argument("checkpoint", help="checkpoint folder (ours, or a Hugging Face ViLT folder with --dataset)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the one the checkpoint was trained on)")
    p.add_argument(
        "--data-root",
        default=None,
        metavar="PATH",
        help="the folder of a real dataset in its release's layout (default: the one the checkpoint was trained "
        "on, when it was trained on this dataset)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=split_choices(),
        help="generated datasets: train, val, test, compositional, and test-paraphrase (the test examples, every "
        "text in a held-out rewording: shapes-vqa, shapes-ve, shapes-nlvr, easy-vqa), val-paraphrase (the val "
        "examples in the validation rewordings: shapes-vqa); real ones: train, val, test "
        "or the release's names (VQAv2: test is the official val; SNLI-VE dev; NLVR2 dev, test1; VQAv2 test-dev)",
    )
    p.add_argument("--size", type=int, default=None, help="number of examples (default: the whole split)")
    p.add_argument("--batch-size", type=int, default=256, help="examples per forward pass (default 256)")
    p.add_argument("--out", default=None, help="JSON file (default: CHECKPOINT/eval-DATASET-SPLIT.json)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)
    return p


def recorded_data_root(ck, dataset: str) -> str | None:
    """The data root a checkpoint was trained with, when it was trained on `dataset` (its train_config)."""
    if ck.meta.get("dataset") != dataset:
        return None
    return (ck.meta.get("train_config") or {}).get("data_root")


def load_data(ck, dataset: str, split: str, size: int | None, data_root: str | None):
    """The split to evaluate: a real one in the checkpoint's class order (its `id2label` / labels)."""
    from workbench.cli.common import check_data_root
    from workbench.data import PARAPHRASED, is_real_dataset, load_dataset
    from workbench.data.paraphrase import PARAPHRASE_SPLITS
    from workbench.data.real import TASKS

    if split in PARAPHRASE_SPLITS and dataset not in PARAPHRASED:
        raise WorkbenchError(f"{dataset} has no reworded texts, so no {split}; these do: {', '.join(PARAPHRASED)}")
    check_data_root(dataset, data_root)
    if not is_real_dataset(dataset):
        try:
            return load_dataset(dataset, split, size)
        except ValueError as e:  # e.g. val-paraphrase of a dataset without validation rewordings
            raise WorkbenchError(str(e)) from e
    if TASKS[dataset] == "retrieval":
        raise WorkbenchError(
            f"{dataset} is a retrieval dataset: evaluate a dual encoder on it with "
            f"`workbench retrieval CHECKPOINT --dataset {dataset} --data-root PATH`"
        )
    return load_dataset(dataset, split, size, data_root=data_root, labels=ck.labels)


def run(args: argparse.Namespace) -> None:
    from workbench.data import Collator
    from workbench.evaluate import evaluate, format_metrics, write_metrics
    from workbench.models.io import load_checkpoint

    ck = load_checkpoint(args.checkpoint, device=args.device)
    dataset = args.dataset or ck.meta.get("dataset")
    if dataset is None:
        raise WorkbenchError("this checkpoint does not say which dataset it was trained on: pass --dataset")
    data = load_data(ck, dataset, args.split, args.size, args.data_root or recorded_data_root(ck, dataset))
    collator = Collator.for_checkpoint(ck)  # a HF ViLT folder (and its students): aspect ratio kept, pixel mask
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval-{dataset}-{args.split}.json"
    if getattr(data, "targets", True) is None:  # VQAv2 test-dev / test-std: questions only
        write_answers(ck, data, collator, args.batch_size, out)
        return
    metrics = evaluate(ck.model, data, collator, batch_size=args.batch_size, progress=True)
    metrics.update({"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split})
    print(format_metrics(metrics))
    write_metrics(metrics, out)
    print(f"wrote {out}")


def write_answers(ck, data, collator, batch_size: int, out: Path) -> None:
    """A split without answers: each question's top answer as the VQA evaluation server takes them,
    [{"question_id", "answer"}] (upload the file to EvalAI for the test-dev / test-std score)."""
    import json

    from workbench.evaluate import evaluate

    predictions = evaluate(ck.model, data, collator, batch_size=batch_size, progress=True, return_predictions=True)
    answers = [
        {"question_id": int(qid), "answer": ck.labels[row["pred"]]}
        for qid, row in zip(data.question_ids, predictions["predictions"])
    ]
    out = out.with_name(out.stem + "-answers.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(answers))
    print(f"{len(answers)} questions of {data.split} without answers: wrote the predictions for the evaluation "
          f"server to {out}")  # fmt: skip
