"""The one training loop, on `accelerate`: every method, the teachers and MAE pre-training run through it.

`Trainer` reads its loop settings from a `TrainConfig` (epochs, batch_size, lr schedule, clipping,
save/log intervals, max_steps, mixed_precision, grad_accum, num_workers) and is given the rest:

    trainer = Trainer(cfg, objective, out, resume=..., progress=...)   # seeds, builds the Accelerator
    ...build the model and its optimizer (the seed is set, so the same config builds the same weights)...
    trainer.setup(model, optimizer, plan, make_batch, validate, format_metrics)  # schedule, resume, prepare
    trainer.fit()                                                      # epochs of step / log / checkpoint
    model = trainer.final_model()

Each step runs `objective.loss(model, batch)` under `accelerator.autocast()` for each of its `grad_accum`
micro-batches (`accelerator.accumulate`: DDP syncs gradients on the last one only), then clips and takes one
optimizer and scheduler step. Evaluation every epoch, metrics as JSON lines, an atomic training-state
checkpoint every epoch (and every `save_every` steps), and exact resume: the plan rebuilds each epoch's order
from the seed, the state restores model, optimizer, scheduler, RNG, loss scaler and the plan's decisions,
and metrics.jsonl is cut back to what it held at that checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, DistributedType
from torch import nn
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.train.config import TrainConfig
from workbench.train.feed import StepBatches, step_batches
from workbench.train.state import latest_state, load_state, save_state


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at step `total`."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The run's Accelerator: DDP under `accelerate launch`, the config's mixed precision and accumulation."""
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher not in ("no", cfg.mixed_precision):
        raise WorkbenchError(
            f"accelerate launch asks for mixed precision {launcher}, the run's config for {cfg.mixed_precision}: "
            f"pass --mixed-precision {launcher} (the run's config records it)"
        )
    cuda = torch.cuda.is_available()
    if cfg.mixed_precision == "fp16" and not cuda:
        raise WorkbenchError("mixed precision fp16 needs a GPU (on a CPU accelerate would train in fp32); use bf16")
    if AcceleratorState._shared_state.get("_mixed_precision", cfg.mixed_precision) != cfg.mixed_precision:
        # accelerate keeps one process-wide state and refuses another precision; a process that trains several
        # runs (tests, notebooks) may change it between runs (the distributed part of the state is kept)
        AcceleratorState._reset_state()
    # the dual student's retrieval parts (projections, logit scale) get no gradient from classification tasks,
    # so DDP must look for unused parameters
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        # checkpoints are written by the main process from its full copy of the weights: DDP only
        raise WorkbenchError(f"training under {accelerator.distributed_type.value} is not supported; use DDP")
    parts = accelerator.num_processes * cfg.grad_accum
    if cfg.batch_size % parts:
        accum = f" x {cfg.grad_accum} accumulated micro-batches" if cfg.grad_accum > 1 else ""
        raise WorkbenchError(f"--batch-size {cfg.batch_size} is the global batch: it must divide evenly over "
                             f"{accelerator.num_processes} processes{accum}")  # fmt: skip
    return accelerator


class Trainer:
    """Runs the loop for one objective on one model; see the module docstring for the order of calls."""

    def __init__(self, cfg: TrainConfig, objective, out: str | Path, *, resume: bool = False, progress: bool = True):
        self.cfg, self.objective, self.out, self.show_progress = cfg, objective, Path(out), progress
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_dir, self.log_path = self.out / "state", self.out / "metrics.jsonl"
        self.saved = latest_state(self.state_dir) if resume else None  # the state to resume from, if any
        set_seed(cfg.seed)
        self.accelerator = make_accelerator(cfg)
        self.val: dict | None = None  # the last validation's metrics

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def setup(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        plan,
        make_batch: Callable,
        validate: Callable[[nn.Module], dict] | None = None,
        format_metrics: Callable[[dict], str] = str,
    ) -> None:
        """The schedule over the plan's steps, the saved state when resuming, and accelerate's wrappers."""
        cfg, accelerator = self.cfg, self.accelerator
        self.plan, self.make_batch, self.validate, self.format_metrics = plan, make_batch, validate, format_metrics
        total = min(plan.planned_steps(), cfg.max_steps) if cfg.max_steps else plan.planned_steps()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total))
        start = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "log_bytes": 0}
        if self.saved:
            start = load_state(self.saved, model, optimizer, self.scheduler)
            # a MAE state from before the one trainer: {"global_step", "recent", "seconds"}, a single epoch
            start = {"epoch": 0, "step_in_epoch": start["global_step"], **start}
            start.setdefault("train_seconds", start.get("seconds", 0.0))
            accelerator.print(f"resuming from {self.saved} at epoch {start['epoch']} step {start['step_in_epoch']}")
        plan.restore(start)
        if self.is_main and "log_bytes" in start and self.log_path.exists():
            # drop the records written after the checkpoint (all of them when starting afresh): they are redone
            with open(self.log_path, "r+b") as f:
                f.truncate(start["log_bytes"])
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        # under mixed precision accelerate wraps the model's forward in autocast; autocast is applied around the
        # whole loss instead (`step`: the teacher's forward too), so evaluation and the saved model stay fp32
        accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        if accelerator.scaler is not None and "scaler" in start:  # fp16's loss scale, for an exact resume
            accelerator.scaler.load_state_dict(start["scaler"])
        if hasattr(self.objective, "prepare"):
            self.objective.prepare(accelerator, self.model)
        self.start, self.global_step = start, start["global_step"]
        self.recent = list(start.get("recent", []))  # the last 50 step losses (progress bar, MAE's final loss)
        # training time accumulates over resumes (kept in the checkpoint), so a resumed run reports its whole cost
        self.t0 = time.time() - start.get("train_seconds", 0.0)

    def seconds(self) -> float:
        return round(time.time() - self.t0, 1)

    # ------------------------------------------------------------------------------------------ the loop

    def fit(self) -> None:
        """Train every epoch left; each ends with a validation and a checkpoint."""
        start = self.start
        for epoch in range(start["epoch"], self.cfg.epochs if not start.get("done") else 0):
            first = start["step_in_epoch"] if epoch == start["epoch"] else 0
            step, steps, done = self.run_epoch(epoch, first)
            finished_epoch = not done or step + 1 == steps
            self.evaluate(epoch)
            self.checkpoint(epoch + 1 if finished_epoch else epoch, 0 if finished_epoch else step + 1, done)
            if done:
                break

    def run_epoch(self, epoch: int, first: int) -> tuple[int, int, bool]:
        """Steps `first`.. of the epoch; returns (last step run, the epoch's steps, whether max_steps ended it)."""
        cfg = self.cfg
        batches, steps = self._feed(epoch, first)
        bar = tqdm(desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not self.show_progress or not self.is_main,
                   initial=first, total=steps)  # fmt: skip
        self.model.train()
        step, done = first - 1, False
        while step + 1 < steps:
            step += 1
            bar.update(step + 1 - bar.n)
            loss, logs = self.step(next(batches))
            self.global_step += 1
            if ended := self.plan.observe(epoch, step, logs, self.mean_over_processes):
                batches, steps = self._feed(epoch, step + 1)  # the plan changed the rest of the epoch
                bar.total = steps
                self.record({"step": self.global_step, "epoch": epoch, **ended})
            self.recent = (self.recent + [loss])[-50:]
            if self.global_step % 10 == 0:
                bar.set_postfix(loss=f"{sum(self.recent) / len(self.recent):.4f}")
            if cfg.log_every and self.global_step % cfg.log_every == 0:
                self.log(epoch, loss, logs)
            if cfg.max_steps and self.global_step >= cfg.max_steps:  # (before save_every: the epoch-end save follows)
                done = True
                break
            if cfg.save_every and self.global_step % cfg.save_every == 0:
                self.checkpoint(epoch, step + 1)
        bar.close()
        return step, steps, done

    def _feed(self, epoch: int, first: int):
        """(this process's batches of the epoch's steps `first`.., the epoch's number of steps)."""
        a = self.accelerator
        batches = StepBatches(self.plan.order(epoch), self.make_batch, self.cfg.batch_size, a.process_index,
                              a.num_processes, self.cfg.grad_accum)  # fmt: skip
        return step_batches(batches, first, self.cfg.num_workers), len(batches)

    def step(self, micro_batches: list) -> tuple[float, dict]:
        """One optimizer step over this process's micro-batches; returns their mean loss and mean logs."""
        accelerator, losses, logs = self.accelerator, [], []
        for batch in micro_batches:
            with accelerator.accumulate(self.model):  # DDP: gradients are all-reduced on the last one only
                with accelerator.autocast():
                    loss, out = self.objective.loss(self.model, batch.to(accelerator.device))
                accelerator.backward(loss)  # divides by grad_accum: the step's gradient is the mean's
            losses.append(loss.item())
            logs.append(out)
        if self.cfg.grad_clip:
            accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if len(micro_batches) == 1:
            return losses[0], logs[0]
        return sum(losses) / len(losses), {k: sum(float(x[k]) for x in logs) / len(logs) for k in logs[0]}

    def mean_over_processes(self, value: float) -> float:
        """The mean of `value` over the processes (every process must call it at the same step)."""
        return self.accelerator.reduce(torch.tensor(float(value), device=self.accelerator.device), "mean").item()

    # ------------------------------------------------------------------------------------------ outputs

    def record(self, record: dict) -> None:
        """Append one record to metrics.jsonl (main process)."""
        if self.is_main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def log(self, epoch: int, loss: float, logs: dict) -> None:
        """A loss record. `loss` and `logs` are this process's means over its slice; the slices are equal, so
        the mean over processes (an all-reduce that every process joins) is the global batch's."""
        names = list(logs)
        local = torch.tensor([loss, *(float(logs[k]) for k in names)], dtype=torch.float64)
        values = self.accelerator.reduce(local.to(self.accelerator.device), reduction="mean").tolist()
        self.record({"step": self.global_step, "epoch": epoch, "loss": values[0], **dict(zip(names, values[1:])),
                     "lr": self.scheduler.get_last_lr()[0], "elapsed_s": self.seconds()})  # fmt: skip

    def evaluate(self, epoch: int) -> None:
        """Validate at the end of an epoch (when the run has a validation): a record and a printed line."""
        if self.validate is None:
            return
        self.val = val = self.validate(self.final_model())
        self.record({"step": self.global_step, "epoch": epoch, "val_accuracy": val["accuracy"],
                     "val_per_type": {q: m["accuracy"] for q, m in val["per_type"].items()},
                     "elapsed_s": self.seconds()})  # fmt: skip
        if self.is_main:
            self.accelerator.print(f"epoch {epoch + 1}: val {self.format_metrics(val)}")

    def checkpoint(self, epoch: int, step_in_epoch: int, done: bool = False) -> None:
        """Save the training state (main process); every process waits for it."""
        if self.is_main:
            progress = {
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "global_step": self.global_step,
                # metrics.jsonl up to this checkpoint (a resumed run truncates to it)
                "log_bytes": self.log_path.stat().st_size if self.log_path.exists() else 0,
                "done": done,  # max_steps reached and validated: only the final evaluation is left
                **self.plan.state(),
                "train_seconds": self.seconds(),
                "recent": self.recent,
            }
            if self.accelerator.scaler is not None:
                progress["scaler"] = self.accelerator.scaler.state_dict()
            save_state(self.state_dir, self.final_model(), self.optimizer, self.scheduler, progress)
        self.accelerator.wait_for_everyone()

    def final_model(self) -> nn.Module:
        """The model without accelerate's wrappers (the trained weights, in fp32)."""
        return self.accelerator.unwrap_model(self.model)
