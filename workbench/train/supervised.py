"""`train(cfg, recipe)`: a teacher or a student on a labelled dataset, through the one `Trainer`.

The steps of a run: claim the output folder (`train_config.json`), build the data and the model (fresh,
`init_from`, `warm_start`), let the objective attach its trainable parts, set up the trainer (plan, optimizer,
resume), fit, then evaluate on the test split and write `<out>/model` (the final checkpoint),
`<out>/test_metrics.json` and `<out>/metrics.jsonl`.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import PartialState
from torch import nn

from workbench.coverage import vocabulary_record, write_train_vocab
from workbench.data import Collator, is_real_dataset, load_dataset, num_images
from workbench.data.paraphrase import PARAPHRASE_SPLITS
from workbench.data.vocab import build_tokenizer
from workbench.errors import WorkbenchError
from workbench.evaluate import evaluate, format_metrics
from workbench.models import create_model, for_task, image_size
from workbench.models.init_from import init_student, sized_for_init
from workbench.models.io import (
    load_checkpoint,
    save_checkpoint,
    vilt_pipeline,
    write_json_atomic,
)
from workbench.train.config import TASK_OF, TrainConfig
from workbench.train.feed import CollatedExamples
from workbench.train.objective import HardLabels
from workbench.train.plan import EpochPlan
from workbench.train.sources import dataset_labels, folder_image_spec, folder_text_limit, source_folder
from workbench.train.stages import earlier_stage_seconds
from workbench.train.state import latest_state
from workbench.train.teachers_seen import (
    changed_teachers,
    record_teachers,
    refuse_changed,
    started_against,
    teachers_of,
)
from workbench.train.trainer import Trainer


def build_model_and_tokenizer(cfg: TrainConfig, labels: tuple[str, ...]):
    """The run's model and tokenizer: from `init_from` (a new head for another task; a HF ViLT folder of any
    head, e.g. ViltForMaskedLM, gives its encoder), else built from `size` with the teacher's tokenizer (or the
    workbench's). A dual student's towers then take the pretrained folders `student_init` / `image_init` /
    `text_init` (`workbench.models.init_from`; not on resume, whose saved weights are restored afterwards):
    what was copied and what starts fresh goes to the log and to `<out>/student_init.json`."""
    if cfg.init_from:
        ck = load_checkpoint(cfg.init_from, kind=cfg.model, for_init=True)
        model, n_images = ck.model, num_images(cfg.dataset)
        if list(ck.labels) != list(labels) or model.num_images != n_images:
            model = for_task(model, n_images, len(labels))  # another task: keep the encoder, start a new head
        return model.train(), ck.tokenizer
    # a student must read token ids exactly as its teacher does
    source = cfg.tokenizer_from or cfg.teacher
    tokenizer = load_checkpoint(source).tokenizer if source else build_tokenizer(paraphrase=cfg.paraphrase)
    folders = {
        k: v for k, v in (("student", cfg.student_init), ("image", cfg.image_init), ("text", cfg.text_init)) if v
    }
    if folders and cfg.model != "dual":
        raise WorkbenchError(f"--student-init / --image-init / --text-init start a dual student's towers; this run "
                             f"trains a {cfg.model} model (start it from a checkpoint with --init-from)")  # fmt: skip
    size = sized_for_init(cfg.size, **folders) if folders else cfg.size  # the text tower the folders need
    model = create_model(cfg.model, len(tokenizer), len(labels), num_images(cfg.dataset), **size)
    if folders and not latest_state(Path(cfg.out) / "state"):
        report = init_student(model, tokenizer=tokenizer, **folders)
        state = PartialState()
        if state.is_main_process:
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            write_json_atomic(Path(cfg.out) / "student_init.json", {"folders": folders, **report.to_dict()})
        state.print(report.summary())
    return model, tokenizer


def warm_start(model: nn.Module, tokenizer, folder: str) -> list[str]:
    """Copy into `model` every weight of the checkpoint in `folder` whose name and shape match; returns the
    names of those left as initialised. Unlike `init_from` the architecture comes from this run's config, so
    a model with another image front end (a conv stem, another patch size) can start from a teacher that
    already learned to read questions and compare them with image tokens; what does not fit (the patch
    projection, image positions, the answer layer of another label set) starts fresh."""
    ck = load_checkpoint(folder)
    if ck.tokenizer.get_vocab() != tokenizer.get_vocab():
        raise WorkbenchError(f"cannot warm-start from {folder}: its tokenizer's vocabulary differs from this run's")
    source, target = ck.model.state_dict(), model.state_dict()
    fits = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    model.load_state_dict(fits, strict=False)
    return sorted(set(target) - set(fits))


def centre_on_data(model: nn.Module, dataset, collator: Collator, n: int = 256) -> None:
    """Data-dependent init of a fresh model's patch projection (see `centre_patch_projection`). Skipped on the
    aspect-ratio pipeline: its padded batches would centre the projection on the padding's zeros too."""
    if collator.image_pipeline is not None:
        return
    batch = collator([dataset[i] for i in range(min(n, len(dataset)))])
    model.centre_patch_embedding(batch.pixel_values.flatten(0, 1))


def adamw(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms, position embeddings and the [CLS] token."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "position" in name or "cls_token" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def train(cfg: TrainConfig, recipe=None, resume: bool = False, progress: bool = True) -> dict:
    """Train and write `<out>/model` (final checkpoint), `<out>/metrics.jsonl`, `<out>/test_metrics.json`.

    `recipe` is the objective (default: `HardLabels`); `resume` continues the run in `cfg.out` exactly."""
    with _threads(cfg.threads):
        return _train(cfg, recipe or HardLabels(), resume, progress)


@contextlib.contextmanager
def _threads(n: int | None):
    """torch's CPU threads set to `n` for the run (None: unchanged), then back."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(old)


def _train(cfg: TrainConfig, objective, resume: bool, progress: bool) -> dict:
    out = claim_output(cfg, resume)
    trainer = Trainer(cfg, objective, out, resume=resume, progress=progress)
    # every process hashes the teachers (the same files), so an unreadable one stops them all alike
    teachers = teachers_of(cfg, getattr(objective, "name", "hard"))
    if trainer.saved:  # resuming: the teachers must be the ones its state learned from
        refuse_changed(out, changed_teachers(out, now=teachers))
    elif trainer.is_main:
        record_teachers(out, teachers)
    train_set, val_set = load_splits(cfg, trainer.accelerator.num_processes)
    model, tokenizer = build_model_and_tokenizer(cfg, train_set.labels)
    collator = run_collator(cfg, model, tokenizer)
    if not cfg.init_from and not trainer.saved:
        centre_on_data(model, train_set, collator)
        if cfg.warm_start:  # after the data-dependent init, so a copied image front end keeps its trained bias
            warm_start(model, tokenizer, cfg.warm_start)
    if hasattr(objective, "attach"):
        # an objective's own trainable parts (MAD's feature projections) ride on the model, so the optimizer, the
        # training state and --resume include them; `objective.detach` drops them before the final checkpoint
        objective.attach(model)
    # an objective may measure its own way (retrieval: R@K, with "accuracy" = mean R@1 for these logs)
    evaluate_fn = getattr(objective, "evaluate", evaluate)
    plan = EpochPlan(train_set, cfg, getattr(objective, "name", "hard"))
    trainer.setup(
        model,
        adamw(model, cfg),
        plan,
        CollatedExamples(train_set, collator),
        validate=lambda m: evaluate_fn(m, val_set, collator, limit=cfg.val_size),
        format_metrics=getattr(objective, "format_metrics", format_metrics),
    )
    trainer.fit()
    return finish(trainer, cfg, train_set, val_set, collator, tokenizer, evaluate_fn, progress)


def run_collator(cfg: TrainConfig, model: nn.Module, tokenizer) -> Collator:
    """The run's collator: sized for `model`, reading images as the source folder does (`sources`: a student of a
    HF ViLT teacher reads exactly the teacher's pixels, aspect ratio kept, with a pixel mask; square otherwise),
    and no longer texts than the teacher's positions take (the teacher reads the same token ids)."""
    spec = folder_image_spec(source_folder(cfg))
    collator = Collator.for_model(model, tokenizer, image_pipeline=vilt_pipeline(spec) if spec else None)
    teacher_limit = folder_text_limit(Path(cfg.teacher)) if cfg.teacher else None
    if teacher_limit:
        collator.max_length = min(collator.max_length, teacher_limit)
    return collator


def claim_output(cfg: TrainConfig, resume: bool) -> Path:
    """The run's folder, with its `train_config.json`; refuses to start over a run without `resume`."""
    out = Path(cfg.out)
    if out.exists() and not resume and (latest_state(out / "state") or (out / "model").exists()):
        raise FileExistsError(f"{out} already holds a run; pass resume=True (--resume) or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_json(out / "train_config.json")
    return out


def load_split(cfg: TrainConfig, split: str, size: int | None):
    """A split of the run's dataset; a real one (`workbench.data.real`) read from `cfg.data_root` in the source
    folder's class order (`sources.dataset_labels`: VQAv2, the teacher's answer vocabulary), its images opened
    per example (the DataLoader workers of `num_workers` read them ahead of the step). With `cfg.paraphrase` the
    train and val texts are drawn from the training families (`workbench.data.paraphrase`); the test split keeps
    the dataset's own wording, and the held-out `test-paraphrase` (and `val-paraphrase`) is never a split of a run.
    `cfg.word_dropout` applies to the training texts only."""
    if split in PARAPHRASE_SPLITS:
        raise WorkbenchError(f"{split} holds held-out rewordings: a run never trains, validates or tests on it "
                             f"(evaluate a checkpoint on it with `workbench eval --split {split}`)")  # fmt: skip
    paraphrase = cfg.rewording if split != "test" else None
    if not is_real_dataset(cfg.dataset):
        drop = cfg.word_dropout if split == "train" else 0.0
        return load_dataset(cfg.dataset, split, size, paraphrase=paraphrase, word_dropout=drop)
    return load_dataset(cfg.dataset, split, size, data_root=cfg.data_root, labels=dataset_labels(cfg))


def load_splits(cfg: TrainConfig, processes: int):
    """The train and val splits; a grouped dataset's groups must fit whole in every micro-batch."""
    train_set = load_split(cfg, "train", cfg.train_size)
    g = getattr(train_set, "group_size", 1)
    if (cfg.batch_size // (processes * cfg.grad_accum)) % g:
        raise WorkbenchError(f"{cfg.dataset} batches whole groups of {g} near-duplicates: --batch-size must be a "
                             f"multiple of {g} per process and micro-batch")  # fmt: skip
    return train_set, load_split(cfg, "val", cfg.val_size)


def finish(trainer: Trainer, cfg: TrainConfig, train_set, val_set, collator, tokenizer, evaluate_fn, progress) -> dict:
    """Test the final model and write `<out>/model` and `<out>/test_metrics.json`."""
    objective, accelerator = trainer.objective, trainer.accelerator
    final = trainer.final_model()
    if hasattr(objective, "detach"):
        objective.detach(final)
    val = trainer.val
    if val is None:  # resumed after the last validation (its record is already in metrics.jsonl)
        val = evaluate_fn(final, val_set, collator, limit=cfg.val_size)
    test = evaluate_fn(final, load_split(cfg, "test", cfg.test_size), collator, progress=progress)
    name = getattr(objective, "name", "hard")
    meta = {
        "task": TASK_OF.get(cfg.dataset, cfg.dataset),
        "dataset": cfg.dataset,
        "labels": list(train_set.labels),
        "qtypes": list(train_set.qtypes),
        "recipe": name,
        "image_size": image_size(final),
        "metrics": {"test": test, "val": val},
        "train_config": asdict(cfg),
        "train_seconds": trainer.seconds(),
        "steps": trainer.global_step,
        "num_processes": accelerator.num_processes,
    }
    earlier = earlier_stage_seconds(cfg)
    if earlier:  # the model alone (a shipped copy) then still says what the whole run took
        meta["earlier_stage_seconds"] = earlier
    # so results tables can tell students of a since-rebuilt teacher: the teachers the run started against (as
    # they are now for a run started before that was recorded); `none` takes only the teacher's tokenizer and size
    seen = started_against(cfg.out)
    if seen is None:
        seen = teachers_of(cfg, name)
    prints = {field: entry["fingerprint"] for field, entry in seen.items()}
    if "teacher" in prints:
        meta["teacher_fingerprint"] = prints.pop("teacher")
    if prints:  # the method's other teachers (MCAD, dide-pt)
        meta["teacher_fingerprints"] = prints
    if accelerator.is_main_process:
        # a student of a HF ViLT teacher keeps its teacher's preprocessing (preprocessor_config.json)
        spec = folder_image_spec(source_folder(cfg))
        save_checkpoint(final, tokenizer, out := Path(cfg.out) / "model", meta, image_spec=spec)
        # the words it was trained on, beside the weights: `ask` reports a question's words it never saw
        source = {"dataset": cfg.dataset, "split": "train", "size": len(train_set), "recipe": name}
        if cfg.rewording:  # reworded: its training templates' words count too (`coverage.vocabulary_record`)
            source["paraphrase"] = cfg.rewording
        write_train_vocab(out, vocabulary_record(train_set, source))
        write_json_atomic(out.parent / "test_metrics.json", test)
        accelerator.print(f"test {trainer.format_metrics(test)}")
    accelerator.wait_for_everyone()  # no process goes on (e.g. to a distillation's next stage) before model/ exists
    return {"val": val, "test": test, "steps": trainer.global_step}
