"""What several commands share: the training options (from `TrainConfig`), the method options (from each
registered method's `Config`), `--config FILE`, and publishing a results table into a Markdown file."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from workbench.cli.options import Option, add_options, as_declared, build, given, names_checkpoint
from workbench.errors import WorkbenchError

# where `--readme` writes a generated table when given without a file: the page of generated results tables
RESULTS_DOC = "docs/results.md"

# model size keys (`TrainConfig.size`, read by `workbench.models`); None leaves the model's own default
SIZE_OPTIONS = {
    "hidden_size": Option("transformer width (default: the model's, 128; a student takes its teacher's)"),
    "num_layers": Option("transformer layers (default 4; a student takes its teacher's)"),
    "num_heads": Option("attention heads (default 4; a student takes its teacher's)"),
    "patch_size": Option("image patch size in pixels (default 16)"),
    "conv_stem": Option(
        "a convolutional stem before the patch projection: conv 3x3 -> ReLU -> max-pool 2 per channel count "
        "(e.g. 16 32); the token grid stays that of --patch-size (see workbench/models/stem.py)",
        kwargs={"nargs": "+", "metavar": "CHANNELS"},
    ),
    "text_layers": Option(
        "student text tower depth (default: the teacher's); with cached image features a query runs only the "
        "text tower and the head, so a shallower text tower answers faster. Distilled layers are counted per "
        "model: -1 is the last layer of each"
    ),
    "image_layers": Option("student image tower depth (default: the teacher's)"),
    "embed_dim": Option("retrieval embedding width (default: the dual teacher's, or 128)"),
}


def _train_options() -> dict[str, Option]:
    """How the `TrainConfig` fields whose type alone does not say read from the command line."""
    from workbench.train import parse_curriculum, parse_oversample

    return {
        "out": Option(
            "run folder: state/, metrics.jsonl, model/ (the final checkpoint); required without --config",
            show_default=False,
        ),
        "train_size": Option("examples per epoch (shapes: distinct generated scenes; default: the dataset's)"),
        "batch_size": Option("global batch size (split across processes)"),
        "curriculum": Option(
            "phases that open the first epoch, each training only on these question types, e.g. "
            "shape:600 shape,colour:400 (what the easy-VQA teacher needs to learn shape); ':balanced' draws the "
            "names in turn; ':until=0.97' makes STEPS a cap and ends the phase once 25 batches in a row average "
            "that training accuracy (the steps left go to the mix; the run still ends at --max-steps); 'none' "
            "clears one recorded in --config",
            convert=parse_curriculum,
            kwargs={"nargs": "+", "metavar": "QTYPES:STEPS"},
        ),
        "oversample": Option(
            "draw every training example with this question type or tag K times per epoch (same number of "
            "steps), e.g. not-colour-present:4 for easy-VQA's rarest yes/no kind; 'none' clears one recorded in "
            "--config",
            convert=parse_oversample,
            kwargs={"nargs": "+", "metavar": "TAG:K"},
        ),
        "threads": Option("CPU threads for the run (default: torch's setting)"),
        "init_from": Option("start from this checkpoint's weights (a new head if its labels differ)"),
        "warm_start": Option(
            "build the model from the size options, then copy every weight of this checkpoint whose name and "
            "shape fit (e.g. another image front end: the text side and transformer come from the checkpoint)"
        ),
        "teacher": Option(
            "fusion teacher checkpoint folder (e.g. assets/shapes-vqa-teacher, or a Hugging Face ViLT folder)"
        ),
        "data_root": Option(
            "the folder of a real dataset (--dataset vqav2, snli-ve, nlvr2 or coco-karpathy) in its release's layout "
            "(docs/real-data.md); its class order and image preprocessing are the teacher's (or --init-from's)",
            kwargs={"metavar": "PATH"},
        ),
    }


def answer_datasets() -> list[str]:
    """The datasets of the answer tasks (VQA, entailment, NLVR): generated ones, then the real ones."""
    from workbench.data import DATASETS, REAL_DATASETS, RETRIEVAL_DATASETS
    from workbench.data.real import TASKS

    real = [d for d in REAL_DATASETS if TASKS[d] != "retrieval"]
    return [d for d in DATASETS if d not in RETRIEVAL_DATASETS] + real


def retrieval_datasets() -> list[str]:
    """The image-text retrieval datasets: the shapes galleries, then COCO with Karpathy's splits."""
    from workbench.data import REAL_DATASETS, RETRIEVAL_DATASETS
    from workbench.data.real import TASKS

    return [*RETRIEVAL_DATASETS, *(d for d in REAL_DATASETS if TASKS[d] == "retrieval")]


def check_data_root(dataset: str, data_root: str | None) -> None:
    """A real dataset needs its folder, a generated one takes none: said before anything runs."""
    from workbench.data import LAYOUTS, is_real_dataset

    if is_real_dataset(dataset) and not data_root:
        raise WorkbenchError(f"{dataset} is read from disk: pass --data-root, the folder holding {LAYOUTS[dataset]}")
    if data_root and not is_real_dataset(dataset):
        raise WorkbenchError(f"{dataset} is generated, not read from disk: it takes no --data-root")


def add_train_options(
    p: argparse.ArgumentParser,
    *,
    skip: tuple[str, ...] = (),
    defaults: dict | None = None,
    choices: dict | None = None,
    sizes: tuple[str, ...] = ("hidden_size", "num_layers", "num_heads", "patch_size", "conv_stem"),
) -> None:
    """`--config FILE`, an option per `TrainConfig` field (but `skip`), the size options, --resume, --no-progress.

    `defaults`: this command's own defaults (e.g. distill-retrieval's dataset); `choices`: {field: allowed}."""
    from workbench.train import TrainConfig

    options = _train_options()
    for name, allowed in (choices or {}).items():
        opt = options.get(name, Option())
        options[name] = dataclasses.replace(opt, kwargs={**opt.kwargs, "choices": list(allowed)})
    p.add_argument(
        "--config",
        metavar="FILE",
        help="start from a saved TrainConfig (a run's train_config.json, its run folder, or a checkpoint folder "
        "such as assets/easy-vqa-teacher: the recipe it was trained with); the options given on the command line "
        "override it",
    )
    group = p.add_argument_group("training options (TrainConfig)")
    dests = add_options(group, TrainConfig, options=options, skip=("size", "recipe_args", *skip), defaults=defaults)
    size_group = p.add_argument_group("model size (TrainConfig.size)")
    size_dests = {f"size.{k}": k for k in sizes}
    for dest, key in size_dests.items():
        opt = SIZE_OPTIONS[key]
        kwargs = {"type": int, "metavar": "N", **opt.kwargs}
        size_group.add_argument("--" + key.replace("_", "-"), dest=dest, default=None, help=opt.help, **kwargs)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(train_dests=dests, train_options=options, train_defaults=defaults or {}, size_dests=size_dests)


def train_config(args: argparse.Namespace):
    """The run's `TrainConfig`: the command's defaults (or `--config FILE`), then the options typed."""
    from workbench.train import TrainConfig

    flags = given(args, args.train_dests, args.train_options)
    cfg = build(TrainConfig, flags, file=args.config, defaults=args.train_defaults)
    size = {k: getattr(args, dest) for dest, k in args.size_dests.items() if getattr(args, dest) is not None}
    if size:
        cfg = dataclasses.replace(cfg, size={**cfg.size, **size})
    if "out" not in flags and (not args.config or names_checkpoint(args.config)):
        # a checkpoint's recorded run folder is another machine's (or the run that made it): never write there
        raise WorkbenchError(
            "--out is required (the run folder), unless --config names a saved run (a checkpoint folder gives only "
            "the recipe it was trained with)"
        )
    check_data_root(cfg.dataset, cfg.data_root)
    return cfg


def _per_method_defaults(names: tuple[str, ...]) -> dict[str, str]:
    """{field: "dide, kd: 1.0; none: 0.0"}: each field's default in every method that has it."""
    from workbench.methods import get_method

    values: dict[str, dict[str, list[str]]] = {}
    for name in names:
        config = get_method(name).config()
        for f in dataclasses.fields(config):
            shown = getattr(config, f.name)
            shown = " ".join(map(str, shown)) if isinstance(shown, (tuple, list)) else str(shown)
            values.setdefault(f.name, {}).setdefault(shown, []).append(name)
    notes = {}
    for fname, by_value in values.items():
        users = [n for ns in by_value.values() for n in ns]
        if len(by_value) == 1 and len(users) == len(names):
            notes[fname] = f"default: {next(iter(by_value))}"
        else:
            notes[fname] = "; ".join(f"{', '.join(ns)}: {v}" for v, ns in by_value.items())
    return notes


def add_method_options(p: argparse.ArgumentParser, names: tuple[str, ...], default: str) -> None:
    """`--recipe NAME` (one of `names`) and an option per field of those methods' Configs, shared names once.

    The help of each option says which recipes have it and their defaults; `method_config` refuses an option
    the chosen recipe does not have."""
    from workbench.methods import get_method

    p.add_argument("--recipe", choices=names, default=None, help=f"the method (default: {default}, or --config's)")
    group = p.add_argument_group(
        "method options (each recipe's Config; workbench/methods/)", "each shows the recipes it applies to"
    )
    notes, dests, seen = _per_method_defaults(names), {}, set()
    for name in names:
        cls = get_method(name).Config
        fields = {f.name for f in dataclasses.fields(cls)}
        dests.update(add_options(group, cls, skip=seen, notes=notes))
        seen |= fields
    p.set_defaults(method_dests=dests, method_default=default, method_names=names)


def method_config(args: argparse.Namespace, cfg):
    """(`cfg` with its recipe set, the method's Config): the recipe's defaults, or the config saved in a
    `--config` run of the same recipe, then the options typed."""
    from workbench.methods import get_method

    recipe = args.recipe or (cfg.recipe if args.config else args.method_default)
    if recipe not in args.method_names:  # a --config of another command's run (e.g. `train`'s "hard")
        raise WorkbenchError(f"{args.config} is a {recipe!r} run; pass --recipe ({', '.join(args.method_names)})")
    method = get_method(recipe)
    knobs = given(args, args.method_dests)
    own = {f.name for f in dataclasses.fields(method.Config)}
    foreign = sorted(set(knobs) - own)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        mine = ", ".join("--" + k.replace("_", "-") for k in sorted(own))
        raise WorkbenchError(f"recipe {recipe!r} has no option {flags}; its options: {mine}")
    saved = args.config and cfg.recipe == recipe and cfg.recipe_args
    try:
        base = method.config_from_dict(cfg.recipe_args) if saved else method.config()
    except (TypeError, ValueError) as e:  # a saved config this version of the method does not know
        raise WorkbenchError(f"{args.config}: {e}") from e
    cfg = dataclasses.replace(cfg, recipe=recipe, model=method.student)
    return cfg, dataclasses.replace(base, **as_declared(method.Config, knobs))


def method_list(names: tuple[str, ...]) -> str:
    """'name (summary); ...' for each method, for a command's description."""
    from workbench.methods import get_method

    return "; ".join(f"{n} ({get_method(n).summary})" for n in names)


def add_publish_option(p: argparse.ArgumentParser, what: str = "the table") -> None:
    p.add_argument(
        "--readme",
        "--publish",
        dest="readme",
        nargs="?",
        const=RESULTS_DOC,
        default=None,
        metavar="FILE",
        help=f"also write {what} into this Markdown file's section (between its <!-- NAME:start/end --> markers; "
        f"default file: {RESULTS_DOC})",
    )


def publish(table: str, out: str | Path, target: str | None, section: str) -> None:
    """Print a results table and where its JSON went; with a target, write it into that file's section."""
    from workbench.report import replace_section

    print(table)
    print(f"wrote {out}")
    if target:
        changed = replace_section(target, section, table)
        print(f"{'updated' if changed else 'unchanged'}: {target}")
