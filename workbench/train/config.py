"""`TrainConfig`: everything a training run depends on, as data. Every run writes it to
`<out>/train_config.json`; `TrainConfig.from_json` reads such a file back (`--config FILE`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from workbench.errors import WorkbenchError

TASK_OF = {
    "easy-vqa": "vqa",
    "shapes-vqa": "vqa",
    "shapes-ve": "ve",
    "shapes-nlvr": "nlvr",
    "shapes-itm": "itm",
    "shapes-itm-mixed": "itm",
    # the real datasets read from disk (`workbench.data.real`); their tasks are the shapes ones'
    "vqav2": "vqa",
    "snli-ve": "ve",
    "nlvr2": "nlvr",
}

MIXED_PRECISION = ("no", "bf16", "fp16")
TRAINING_FAMILIES = ("train", "train-wide")  # the paraphrase modes a run can train on (`workbench.data.paraphrase`)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved next to its outputs (configs as data)."""

    model: str = "fusion"  # a registered kind: fusion | dual
    dataset: str = "shapes-vqa"
    # the folder holding a real dataset (vqav2, snli-ve, nlvr2, coco-karpathy) in its release's layout
    # (docs/real-data.md); the generated datasets take none
    data_root: str | None = None
    out: str = "runs/shapes-vqa-fusion"
    epochs: int = 1
    train_size: int | None = None  # None: the dataset's default
    val_size: int = 2000
    test_size: int | None = None  # None: the whole test split
    # train and validate on reworded text: each question, hypothesis or statement drawn from its training families
    # (workbench/data/paraphrase.py; shapes-vqa, shapes-ve, shapes-nlvr, easy-vqa); the test split keeps the
    # dataset's wording, and the held-out split test-paraphrase (`workbench eval --split test-paraphrase`) is never
    # used in training or selection. A fresh tokenizer also gets the reworded texts' words
    paraphrase: bool = False
    # with `paraphrase`: which training families: "train", or "train-wide" (those and the wider training rewordings,
    # shapes-vqa: more closers and word orders per meaning)
    paraphrase_families: str = "train"
    # with `paraphrase`: each word of a training text's own phrasing is left out with this probability (its colours,
    # shapes and sizes stay; `workbench.data.paraphrase.drop_words`), so no single word decides what is asked
    word_dropout: float = 0.0
    # the global batch of one optimizer step: over all processes (DDP) and all `grad_accum` micro-batches
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    log_every: int = 50  # a loss record in metrics.jsonl every N steps
    max_steps: int | None = None  # stop early (tests, probes)
    recipe: str = "hard"
    init_from: str | None = None  # start from a checkpoint folder (e.g. a pre-trained student)
    # build the model from `size`, then copy from this checkpoint every weight whose name and shape fit (the
    # text side and the transformer when only the image front end differs; see `warm_start`)
    warm_start: str | None = None
    # a dual student's towers from local pretrained folders (docs/student-init.md), copied when the student is
    # built fresh: not on resume (the saved weights are restored), not with `init_from` (its weights are kept)
    student_init: str | None = None  # a ViLT folder: its transformer into both towers, as the official DiDE code
    image_init: str | None = None  # a ViT folder, or a ViLT folder (its vision part): the image tower alone
    text_init: str | None = None  # a BERT folder (the "bert" text tower) or a ViLT / ViT one (the "vilt" one)
    teacher: str | None = None  # distillation: the teacher's folder (its tokenizer is used too)
    # a fresh model's tokenizer from this folder instead of the teacher's (set by a method, not an option: dide-pt's
    # matching stage learns from a teacher of a smaller vocabulary but must read token ids as the task teacher does)
    tokenizer_from: str | None = None
    size: dict = field(default_factory=dict)  # model size overrides (hidden_size, num_layers, ...)
    recipe_args: dict = field(default_factory=dict)
    # a curriculum: phases [[qtypes, steps], ...] that open the first epoch, each training only on questions of
    # those types (easy-VQA: shape questions need ~600 steps of undivided gradient; in the full mix shape stayed
    # near chance)
    curriculum: list = field(default_factory=list)
    # {tag: k}: every epoch draws each training example carrying `tag` k times, in the same number of steps (so
    # the other examples are drawn a little less); why easy-VQA needs it: `data.easy_vqa.OVERSAMPLE`
    oversample: dict = field(default_factory=dict)
    # CPU threads for this run (None: torch's setting). The sums of a step differ with the thread count, and a
    # run that must escape a saddle can land differently (docs/lab-notes.md "easy-VQA: what it took")
    threads: int | None = None
    # scale (`workbench.train.trainer`). Mixed precision through accelerate: "bf16" (CPUs and recent GPUs) or "fp16"
    # (GPUs only, with a loss scaler); the forward pass and the loss run under autocast, the weights, the
    # optimizer and every evaluation stay in fp32
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    # micro-batches per optimizer step: each process runs batch_size / (processes * grad_accum) examples at a
    # time and steps once per batch_size examples, so the schedule, the data order and resume do not change
    grad_accum: int = 1
    # DataLoader worker processes building the collated batches ahead of the step (0: in the training process);
    # the order is the same either way
    num_workers: int = 0

    def __post_init__(self):
        if self.mixed_precision not in MIXED_PRECISION:
            raise WorkbenchError(f"mixed_precision {self.mixed_precision!r}: expected one of {MIXED_PRECISION}")
        if not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise WorkbenchError(f"grad_accum {self.grad_accum!r}: expected a whole number >= 1")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise WorkbenchError(f"num_workers {self.num_workers!r}: expected a whole number >= 0")
        if self.paraphrase_families not in TRAINING_FAMILIES:
            raise WorkbenchError(
                f"paraphrase_families {self.paraphrase_families!r}: expected one of {TRAINING_FAMILIES}"
            )
        if self.paraphrase_families != "train" and not self.paraphrase:  # else it would be silently ignored
            raise WorkbenchError("--paraphrase-families applies to reworded text: give --paraphrase too")
        if self.paraphrase or self.word_dropout:  # only then: reading a plain config does not load the datasets
            from workbench.data.paraphrase import check_rewording

            try:
                check_rewording(self.dataset, self.rewording, self.word_dropout)
            except ValueError as e:
                raise WorkbenchError(f"{e} (--paraphrase, --paraphrase-families, --word-dropout)") from e
        if self.paraphrase:
            from workbench.data import PARAPHRASED  # only then: reading a config does not load the datasets

            if self.dataset not in PARAPHRASED:
                these = ", ".join(PARAPHRASED)
                raise WorkbenchError(f"--paraphrase: {self.dataset} has no reworded texts; these do: {these}")

    @property
    def rewording(self) -> str | None:
        """The families the training (and validation) texts are drawn from (`load_dataset`'s `paraphrase`), None
        when the run keeps the dataset's own wording."""
        return self.paraphrase_families if self.paraphrase else None

    def to_json(self, path: str | Path) -> None:
        """Write the config as `<out>/train_config.json` holds it."""
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_dict(cls, values: dict, source: str = "the config") -> TrainConfig:
        """A config from plain data; keys it does not know raise one error naming them all."""
        if not isinstance(values, dict):
            raise WorkbenchError(f"{source}: expected a JSON object of TrainConfig fields, got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise WorkbenchError(f"{source}: unknown TrainConfig key(s) {unknown}; known keys: {known}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a saved `train_config.json` back; fields it lacks (a run from before they existed) take
        their defaults."""
        try:
            values = json.loads(Path(path).read_text())
        except OSError as e:
            raise WorkbenchError(f"cannot read the config {path}: {e}") from e
        except ValueError as e:
            raise WorkbenchError(f"the config {path} is not valid JSON: {e}") from e
        return cls.from_dict(values, source=str(path))
