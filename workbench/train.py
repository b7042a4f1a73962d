"""Training loop for teachers and students, on `accelerate`.

One loop serves every recipe: a recipe is an object with `loss(model, batch) -> (loss, logs)`
(hard labels here; distillation recipes in `workbench.distill.recipes`). The loop gives:
tqdm progress, evaluation every epoch, metrics as JSON lines, an atomic training-state
checkpoint every epoch (and every `save_every` steps), `resume`, and deterministic data order.

Resuming is exact: the data order of epoch e is a permutation seeded by (seed, e), so a resumed
run skips the batches already seen; model, optimizer, scheduler and RNG states come back from
`<out>/state/` (safetensors + JSON, no pickle).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from workbench.data import Collator, load_dataset, num_images
from workbench.data.vocab import build_tokenizer
from workbench.errors import CheckpointError, WorkbenchError
from workbench.evaluate import evaluate, format_metrics
from workbench.models import create_model, for_task, image_size
from workbench.models.io import load_checkpoint, save_checkpoint, weights_fingerprint, write_json_atomic

TASK_OF = {
    "easy-vqa": "vqa",
    "shapes-vqa": "vqa",
    "shapes-ve": "ve",
    "shapes-nlvr": "nlvr",
    "shapes-itm": "itm",
    "shapes-itm-mixed": "itm",
}


@dataclass
class TrainConfig:
    """Everything a run depends on; saved next to its outputs (configs as data)."""

    model: str = "fusion"  # a registered kind: fusion | dual
    dataset: str = "shapes-vqa"
    out: str = "runs/shapes-vqa-fusion"
    epochs: int = 1
    train_size: int | None = None  # None: the dataset's default
    val_size: int = 2000
    test_size: int | None = None  # None: the whole test split
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
    teacher: str | None = None  # distillation: the teacher's folder (its tokenizer is used too)
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
    # run that must escape a saddle can land differently (README "easy-VQA: what it took")
    threads: int | None = None


class HardLabels:
    """Cross-entropy on the gold label: the baseline recipe for teachers and students."""

    name = "hard"

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        logits = model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
        loss = nn.functional.cross_entropy(logits, batch.labels)
        return loss, {"ce": loss.item(), "accuracy": batch_accuracy(logits, batch.labels)}


def batch_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of the batch whose top answer is the gold label (logged; `until=` curriculum phases read it)."""
    return (logits.argmax(-1) == labels).float().mean().item()


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _tagger(dataset, option: str):
    """(tags_of, known): example i's question type and finer tags without building the example, and every name
    the dataset knows; for --curriculum and --oversample."""
    qtype_of = getattr(dataset, "qtype", None)
    if qtype_of is None:
        raise WorkbenchError(f"{type(dataset).__name__} cannot tell question types without building examples; "
                             f"{option} works on easy-vqa, shapes-vqa and shapes-itm(-mixed)")  # fmt: skip
    tags_of = getattr(dataset, "tags", None) or (lambda i: (qtype_of(i),))
    return tags_of, (*dataset.qtypes, *getattr(dataset, "curriculum_tags", ()))


def sampled_order(dataset, oversample: dict, seed: int, epoch: int) -> list[int]:
    """One epoch's shuffled example order, with the examples carrying a tag of `oversample` drawn k times.

    A dataset with `group_size` g > 1 (shapes-retrieval-hard: a scene and its one-attribute variants) is
    shuffled by whole groups of g consecutive examples, so a batch (a multiple of g) holds every group it
    touches: its in-batch negatives include the near-duplicates the test gallery holds.
    """
    g = getattr(dataset, "group_size", 1)
    if g > 1:
        if oversample:
            raise WorkbenchError("--oversample works on question types, not on grouped retrieval data")
        return [k * g + j for k in epoch_order(len(dataset) // g, seed, epoch) for j in range(g)]
    if not oversample:
        return epoch_order(len(dataset), seed, epoch)
    tags_of, known = _tagger(dataset, "--oversample")
    unknown = set(oversample) - set(known)
    if unknown:
        raise WorkbenchError(f"--oversample {sorted(unknown)}: not question types or tags of this dataset {known}")
    pool = [i for i in range(len(dataset)) for _ in range(max(oversample.get(t, 1) for t in tags_of(i)))]
    return [pool[j] for j in epoch_order(len(pool), seed, epoch)]


def phase_modes(phase) -> tuple[bool, float | None]:
    """A curriculum phase's modes: (balanced, gate). `[names, steps, "balanced", "until=0.95"]` -> (True, 0.95)."""
    balanced, gate = False, None
    for mode in phase[2:]:
        if mode == "balanced":
            balanced = True
        elif isinstance(mode, str) and mode.startswith("until="):
            value = mode.removeprefix("until=")
            gate = float(value) if value.replace(".", "", 1).isdigit() else None
            if gate is None or not 0 < gate <= 1:
                raise WorkbenchError(f"--curriculum phase {phase[0]}:{phase[1]}: {mode} needs an accuracy in (0, 1]")
        else:
            raise WorkbenchError(
                f"--curriculum phase {phase[0]}:{phase[1]}: unknown mode {mode!r} (only 'balanced' and 'until=ACC')"
            )
    return balanced, gate


def curriculum_phases(dataset, phases, batch_size: int, seed: int) -> list[list[int]]:
    """Each curriculum phase's examples, in order: for a phase `[names, steps]`, `steps` batches of only the
    examples that carry one of `names` (a question type, or a finer tag the dataset defines in
    `curriculum_tags`), in an order seeded like the epochs' (repeated when the subset is small). Mode
    "balanced" draws the names in turn, so a rare kind gets as many examples as a common one; mode
    "until=ACC" makes `steps` a cap: the phase ends once its batches are answered at ACC (`PhaseGate`)."""
    if not phases:
        return []
    tags_of, known = _tagger(dataset, "--curriculum")
    out: list[list[int]] = []
    for k, phase in enumerate(phases):
        names, steps = phase[0], phase[1]
        unknown = set(names) - set(known)
        if unknown:
            raise WorkbenchError(f"--curriculum {sorted(unknown)}: not question types or tags of this dataset {known}")
        balanced, _ = phase_modes(phase)
        shuffled = epoch_order(len(dataset), seed, -1 - k)
        if balanced:  # one pool per name, drawn in turn
            pools = [[i for i in shuffled if name in tags_of(i)] for name in names]
        else:
            wanted = set(names)
            pools = [[i for i in shuffled if wanted.intersection(tags_of(i))]]
        for name, pool in zip(names, pools):
            if not pool:
                raise WorkbenchError(f"--curriculum: no training example carries {name if balanced else list(names)}")
        order = []
        for j in range(steps * batch_size):  # pools in turn; each pool repeats when it runs out
            pool = pools[j % len(pools)]
            order.append(pool[(j // len(pools)) % len(pool)])
        out.append(order)
    return out


def curriculum_order(dataset, phases, batch_size: int, seed: int) -> list[int]:
    """All the curriculum's examples in order, every phase at its full number of steps."""
    return [i for phase in curriculum_phases(dataset, phases, batch_size, seed) for i in phase]


class PhaseGate:
    """Ends a curriculum phase early once the model has learned what it teaches: when the mean accuracy on
    the phase's own training batches over the last `window` steps reaches the phase's `until=ACC`.

    Why: the easy-VQA teacher sits on a plateau in its shape phase whose length depends on the seed and the
    thread count (escaping at step ~450 for seeds 0 and 1, after step 800 for seed 2): a fixed length is either
    too short for some runs or wasted on the others. The steps a phase does not use go to the rest of the run
    (set `max_steps`: the run still ends there, on the same learning-rate schedule). The gate reads the batches
    just before each update, so it costs nothing; `cut` holds the steps of every phase that ended early, and is
    saved in the training state so a resumed run rebuilds the same order."""

    def __init__(self, phases, window: int = 25, cut: dict | None = None, recent: list | None = None):
        self.limits = [phase_modes(p)[1] for p in phases]
        self.planned = [p[1] for p in phases]
        self.window = window
        self.cut = {int(k): v for k, v in (cut or {}).items()}
        self.recent = list(recent or [])

    def steps(self) -> list[int]:
        return [self.cut.get(k, n) for k, n in enumerate(self.planned)]

    def phase_at(self, step: int) -> tuple[int, int] | None:
        """(phase, step within it) of the epoch's `step`, or None once the phases are over."""
        for k, n in enumerate(self.steps()):
            if step < n:
                return k, step
            step -= n
        return None

    def watching(self, step: int) -> bool:
        at = self.phase_at(step)
        return at is not None and self.limits[at[0]] is not None

    def update(self, step: int, accuracy: float) -> dict | None:
        """Record the batch accuracy of the epoch's `step` (a gated phase's). When its phase ends here, a record
        for metrics.jsonl: the phase, its steps, the window's mean accuracy, and whether it passed."""
        k, inside = self.phase_at(step)
        self.recent = (self.recent + [accuracy])[-self.window :]
        mean = sum(self.recent) / len(self.recent)
        passed = len(self.recent) == self.window and mean >= self.limits[k]
        if not passed and inside + 1 < self.planned[k]:
            return None
        if inside + 1 < self.planned[k]:
            self.cut[k] = inside + 1
        self.recent = []  # the next phase starts its own window
        return {"phase": k, "phase_steps": inside + 1, "phase_accuracy": round(mean, 4), "passed": passed}

    def state(self) -> dict:
        return {"cut": {str(k): v for k, v in self.cut.items()}, "recent": self.recent}

    def order(self, phase_orders: list[list[int]], batch_size: int) -> list[int]:
        return [i for order, n in zip(phase_orders, self.steps()) for i in order[: n * batch_size]]


def parse_curriculum(phases: list[str]) -> list:
    """`["shape:600:until=0.95", "colour-present,colour-absent:800:balanced"]` ->
    `[[["shape"], 600, "until=0.95"], [["colour-present", "colour-absent"], 800, "balanced"]]`."""
    out = []
    for phase in phases:
        parts = phase.split(":")
        modes = []
        while len(parts) > 2 and (parts[-1] == "balanced" or parts[-1].startswith("until=")):
            modes.insert(0, parts.pop())
        names, steps = parts if len(parts) == 2 else ("", "")
        if not names or not steps.isdigit() or int(steps) <= 0:
            raise WorkbenchError(
                f"--curriculum phase {phase!r}: expected NAME[,NAME...]:STEPS[:balanced][:until=ACC], e.g. shape:600"
            )
        out.append([names.split(","), int(steps), *modes])
        phase_modes(out[-1])  # a bad until= fails here, before the run starts
    return out


def parse_oversample(items: list[str]) -> dict:
    """`["not-colour-present:4"]` -> `{"not-colour-present": 4}`."""
    out = {}
    for item in items:
        name, _, k = item.rpartition(":")
        if not name or not k.isdigit() or int(k) < 1:
            raise WorkbenchError(f"--oversample {item!r}: expected TAG:K with K >= 1, e.g. not-colour-present:4")
        out[name] = int(k)
    return out


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


# ----------------------------------------------------------------------------------------------
# training state: safetensors for tensors, JSON for the rest


def save_state(dirpath: Path, model: nn.Module, optimizer, scheduler, progress: dict) -> None:
    tmp = dirpath.with_name(dirpath.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in opt["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(
        json.dumps(
            {
                "progress": progress,
                "param_groups": opt["param_groups"],
                "optimizer_scalars": scalars,
                "scheduler": scheduler.state_dict(),
                "python_random": _jsonable(random.getstate()),
            }
        )
    )
    for f in [*tmp.iterdir(), tmp]:  # on disk before the swap, so a power cut cannot leave a renamed empty file
        _fsync(f)
    # a crash between these two renames leaves only `<state>.old`, a complete checkpoint: `latest_state` uses it
    old = dirpath.with_name(dirpath.name + ".old")
    if dirpath.exists():
        if old.exists():
            shutil.rmtree(old)
        dirpath.rename(old)
    tmp.rename(dirpath)
    _fsync(dirpath.parent)
    if old.exists():
        shutil.rmtree(old)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def latest_state(dirpath: Path) -> Path | None:
    """The training state to resume from: `dirpath`, or `<dirpath>.old` if a crash came mid-swap."""
    old = dirpath.with_name(dirpath.name + ".old")
    return dirpath if dirpath.exists() else old if (old / "state.json").exists() else None


def _jsonable(obj):
    return [_jsonable(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _tuplify(obj):
    return tuple(_tuplify(x) for x in obj) if isinstance(obj, list) else obj


def load_state(dirpath: Path, model: nn.Module, optimizer, scheduler) -> dict:
    try:
        meta = json.loads((dirpath / "state.json").read_text())
        model.load_state_dict(load_file(dirpath / "model.safetensors"))
        tensors = load_file(dirpath / "optimizer.safetensors")
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"cannot resume from {dirpath}: {e}") from e
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    random.setstate(_tuplify(meta["python_random"]))
    return meta["progress"]


# ----------------------------------------------------------------------------------------------


def build_model_and_tokenizer(cfg: TrainConfig, labels: tuple[str, ...]):
    if cfg.init_from:
        ck = load_checkpoint(cfg.init_from, kind=cfg.model)
        model, n_images = ck.model, num_images(cfg.dataset)
        if list(ck.labels) != list(labels) or model.num_images != n_images:
            model = for_task(model, n_images, len(labels))  # another task: keep the encoder, start a new head
        return model.train(), ck.tokenizer
    # a student must read token ids exactly as its teacher does
    tokenizer = load_checkpoint(cfg.teacher).tokenizer if cfg.teacher else build_tokenizer()
    model = create_model(cfg.model, len(tokenizer), len(labels), num_images(cfg.dataset), **cfg.size)
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
    """Data-dependent init of a fresh model's patch projection (see `centre_patch_projection`)."""
    batch = collator([dataset[i] for i in range(min(n, len(dataset)))])
    model.centre_patch_embedding(batch.pixel_values.flatten(0, 1))


def train(cfg: TrainConfig, recipe=None, resume: bool = False, progress: bool = True) -> dict:
    """Train and write `<out>/model` (final checkpoint), `<out>/metrics.jsonl`, `<out>/test_metrics.json`."""
    if not cfg.threads:
        return _train(cfg, recipe, resume, progress)
    old = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, recipe, resume, progress)
    finally:
        torch.set_num_threads(old)


def _train(cfg: TrainConfig, recipe, resume: bool, progress: bool) -> dict:
    recipe = recipe or HardLabels()
    # a recipe may measure its own way (retrieval recipes: R@K, with "accuracy" = mean R@1 for these logs)
    evaluate_fn = getattr(recipe, "evaluate", evaluate)
    format_fn = getattr(recipe, "format_metrics", format_metrics)
    out = Path(cfg.out)
    state_dir = out / "state"
    saved = latest_state(state_dir)
    if out.exists() and not resume and (saved or (out / "model").exists()):
        raise FileExistsError(f"{out} already holds a run; pass resume=True (--resume) or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    set_seed(cfg.seed)
    # DDP under `accelerate launch`: the dual student's retrieval parts (projections, logit scale) get no
    # gradient from classification tasks, so DDP must look for unused parameters
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        # checkpoints are written by the main process from its full copy of the weights: DDP only
        raise WorkbenchError(f"training under {accelerator.distributed_type.value} is not supported; use DDP")
    if cfg.batch_size % accelerator.num_processes:
        raise WorkbenchError(
            f"--batch-size {cfg.batch_size} is the global batch: it must divide evenly over "
            f"{accelerator.num_processes} processes"
        )
    train_set = load_dataset(cfg.dataset, "train", cfg.train_size)
    if cfg.batch_size % (g := getattr(train_set, "group_size", 1)):
        raise WorkbenchError(f"{cfg.dataset} batches whole groups of {g} near-duplicates: --batch-size must be a "
                             f"multiple of {g}")  # fmt: skip
    val_set = load_dataset(cfg.dataset, "val", cfg.val_size)
    model, tokenizer = build_model_and_tokenizer(cfg, train_set.labels)
    collator = Collator.for_model(model, tokenizer)
    if not cfg.init_from and not (resume and saved):
        centre_on_data(model, train_set, collator)
        if cfg.warm_start:  # after the data-dependent init, so a copied image front end keeps its trained bias
            warm_start(model, tokenizer, cfg.warm_start)

    if hasattr(recipe, "attach"):
        # a recipe's own trainable parts (MAD's feature projections) ride on the model, so the optimizer, the
        # training state and --resume include them; `recipe.detach` drops them before the final checkpoint
        recipe.attach(model)

    steps_per_epoch = len(train_set) // cfg.batch_size
    phase_orders = curriculum_phases(train_set, cfg.curriculum, cfg.batch_size, cfg.seed)
    total_steps = steps_per_epoch * cfg.epochs + sum(p[1] for p in cfg.curriculum)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "position" in name or "cls_token" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.warmup_steps, total_steps))

    log_path = out / "metrics.jsonl"
    start = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "log_bytes": 0}
    if resume and saved:
        start = load_state(saved, model, optimizer, scheduler)
        accelerator.print(f"resuming from {saved} at epoch {start['epoch']} step {start['step_in_epoch']}")
    gate = PhaseGate(cfg.curriculum, **start.get("gate", {}))
    if accelerator.is_main_process and "log_bytes" in start and log_path.exists():
        # drop the records written after the checkpoint (all of them when starting afresh): they are redone
        with open(log_path, "r+b") as f:
            f.truncate(start["log_bytes"])
    model, optimizer = accelerator.prepare(model, optimizer)
    if hasattr(recipe, "prepare"):
        recipe.prepare(accelerator, model)

    global_step = start["global_step"]
    # training time accumulates over resumes (kept in the checkpoint), so a resumed run reports its whole cost
    t0 = time.time() - start.get("train_seconds", 0.0)

    def checkpoint(epoch: int, step_in_epoch: int, done: bool = False) -> None:
        if accelerator.is_main_process:
            log_bytes = log_path.stat().st_size if log_path.exists() else 0
            save_state(
                state_dir,
                accelerator.unwrap_model(model),
                optimizer,
                scheduler,
                {
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "global_step": global_step,
                    "log_bytes": log_bytes,  # metrics.jsonl up to this checkpoint (a resumed run truncates to it)
                    "done": done,  # max_steps reached and validated: only the test evaluation is left
                    "gate": gate.state(),  # curriculum phases that ended early (the epoch's order depends on them)
                    "train_seconds": round(time.time() - t0, 1),
                },
            )
        accelerator.wait_for_everyone()

    done, val = False, None
    for epoch in range(start["epoch"], cfg.epochs if not start.get("done") else 0):
        order = sampled_order(train_set, cfg.oversample, cfg.seed, epoch)[: steps_per_epoch * cfg.batch_size]
        if epoch == 0:  # the curriculum's phases open the first epoch
            mix = order
            order = gate.order(phase_orders, cfg.batch_size) + mix
        steps_this_epoch = len(order) // cfg.batch_size
        first = start["step_in_epoch"] if epoch == start["epoch"] else 0
        # each process takes its own slice of every global batch (DDP), so the global batch is cfg.batch_size
        per_proc = cfg.batch_size // accelerator.num_processes
        bar = tqdm(
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress or not accelerator.is_main_process,
            initial=first,
            total=steps_this_epoch,
        )
        model.train()
        step = first - 1
        while step + 1 < steps_this_epoch:
            step += 1
            bar.update(step + 1 - bar.n)
            lo = step * cfg.batch_size + accelerator.process_index * per_proc
            batch = collator([train_set[i] for i in order[lo : lo + per_proc]]).to(accelerator.device)
            loss, logs = recipe.loss(model, batch)
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            if epoch == 0 and gate.watching(step):
                if "accuracy" not in logs:
                    name = getattr(recipe, "name", recipe)
                    raise WorkbenchError(f"recipe {name!r} reports no batch accuracy: it cannot use until= phases")
                acc = accelerator.reduce(torch.tensor(float(logs["accuracy"]), device=accelerator.device), "mean")
                if ended := gate.update(step, acc.item()):
                    order = gate.order(phase_orders, cfg.batch_size) + mix
                    steps_this_epoch = len(order) // cfg.batch_size
                    bar.total = steps_this_epoch
                    if accelerator.is_main_process:
                        _append(log_path, {"step": global_step, "epoch": epoch, **ended})
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if cfg.log_every and global_step % cfg.log_every == 0:
                # `loss` and `logs` are this process's means over its slice; the slices are equal, so the mean
                # over processes (an all-reduce that every process joins) is the global batch's loss
                names = list(logs)
                local = torch.tensor([loss.item(), *(float(logs[k]) for k in names)], dtype=torch.float64)
                values = accelerator.reduce(local.to(accelerator.device), reduction="mean").tolist()
                if accelerator.is_main_process:
                    _append(
                        log_path,
                        {
                            "step": global_step,
                            "epoch": epoch,
                            "loss": values[0],
                            **dict(zip(names, values[1:])),
                            "lr": scheduler.get_last_lr()[0],
                            "elapsed_s": round(time.time() - t0, 1),
                        },
                    )
            if cfg.max_steps and global_step >= cfg.max_steps:  # (before save_every: the epoch-end save follows)
                done = True
                break
            if cfg.save_every and global_step % cfg.save_every == 0:
                checkpoint(epoch, step + 1)
        bar.close()
        finished_epoch = not done or step + 1 == steps_this_epoch
        val = evaluate_fn(accelerator.unwrap_model(model), val_set, collator, limit=cfg.val_size)
        if accelerator.is_main_process:
            _append(
                log_path,
                {
                    "step": global_step,
                    "epoch": epoch,
                    "val_accuracy": val["accuracy"],
                    "val_per_type": {q: m["accuracy"] for q, m in val["per_type"].items()},
                    "elapsed_s": round(time.time() - t0, 1),
                },
            )
            accelerator.print(f"epoch {epoch + 1}: val {format_fn(val)}")
        checkpoint(epoch + 1 if finished_epoch else epoch, 0 if finished_epoch else step + 1, done)
        if done:
            break

    final = accelerator.unwrap_model(model)
    if hasattr(recipe, "detach"):
        recipe.detach(final)
    if val is None:  # resumed after the last validation (its record is already in metrics.jsonl)
        val = evaluate_fn(final, val_set, collator, limit=cfg.val_size)
    test_set = load_dataset(cfg.dataset, "test", cfg.test_size)
    test = evaluate_fn(final, test_set, collator, progress=progress)
    meta = {
        "task": TASK_OF.get(cfg.dataset, cfg.dataset),
        "dataset": cfg.dataset,
        "labels": list(train_set.labels),
        "qtypes": list(train_set.qtypes),
        "recipe": getattr(recipe, "name", "hard"),
        "image_size": image_size(final),
        "metrics": {"test": test, "val": val},
        "train_config": asdict(cfg),
        "train_seconds": round(time.time() - t0, 1),
        "steps": global_step,
        "num_processes": accelerator.num_processes,
    }
    # so results tables can tell students of a since-rebuilt teacher (distill/experiment.py); `none` takes only
    # the teacher's tokenizer and size, so a rebuilt teacher does not make it stale
    learns_from_teacher = getattr(recipe, "name", "hard") not in ("hard", "none")
    if learns_from_teacher and cfg.teacher and (fingerprint := weights_fingerprint(cfg.teacher)):
        meta["teacher_fingerprint"] = fingerprint
    if accelerator.is_main_process:
        save_checkpoint(final, tokenizer, out / "model", meta)
        write_json_atomic(out / "test_metrics.json", test)
        accelerator.print(f"test {format_fn(test)}")
    accelerator.wait_for_everyone()  # no process goes on (e.g. to a distillation's next stage) before model/ exists
    return {"val": val, "test": test, "steps": global_step}


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


__all__ = ["HardLabels", "TrainConfig", "train"]
