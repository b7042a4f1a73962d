"""Plans: which examples each optimizer step of an epoch trains on.

A plan gives the trainer an epoch's example ids in order (`order(epoch)`, batch_size ids per step), the
length of the learning-rate schedule (`planned_steps()`), and may change the rest of an epoch's order after a
step (`observe`, the curriculum's `PhaseGate`); what it decided is saved in the training state (`state()`,
`restore(progress)`) so a resumed run rebuilds the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workbench.errors import WorkbenchError
from workbench.train.curriculum import PhaseGate, curriculum_phases
from workbench.train.sampling import sampled_order


class EpochPlan:
    """A dataset's epochs: each a seeded shuffle (with `oversample`), the first opened by the curriculum's
    phases, which a `PhaseGate` may end early."""

    def __init__(self, dataset, cfg, objective_name: str = "hard"):
        self.dataset, self.cfg, self.objective_name = dataset, cfg, objective_name
        self.batch_size = cfg.batch_size
        self.steps_per_epoch = len(dataset) // cfg.batch_size
        self.phase_orders = curriculum_phases(dataset, cfg.curriculum, cfg.batch_size, cfg.seed)
        self.gate = PhaseGate(cfg.curriculum)
        self._mix: tuple[int, list[int]] | None = None  # (epoch, its shuffled order), built once per epoch

    def planned_steps(self) -> int:
        """Every epoch plus every curriculum phase at its full length (a phase ended early leaves its steps to
        the rest of the run, which `max_steps` still ends on the same schedule)."""
        return self.steps_per_epoch * self.cfg.epochs + sum(p[1] for p in self.cfg.curriculum)

    def order(self, epoch: int) -> list[int]:
        if self._mix is None or self._mix[0] != epoch:
            mix = sampled_order(self.dataset, self.cfg.oversample, self.cfg.seed, epoch)
            self._mix = epoch, mix[: self.steps_per_epoch * self.batch_size]
        mix = self._mix[1]
        if epoch == 0:  # the curriculum's phases open the first epoch
            return self.gate.order(self.phase_orders, self.batch_size) + mix
        return mix

    def observe(self, epoch: int, step: int, logs: dict, mean: Callable[[float], float]) -> dict | None:
        """After the epoch's `step`: feed a gated phase's batch accuracy (`mean` averages it over processes) to
        the gate; when the phase ends, a record for metrics.jsonl (and `order(epoch)` has changed)."""
        if epoch != 0 or not self.gate.watching(step):
            return None
        if "accuracy" not in logs:
            raise WorkbenchError(
                f"recipe {self.objective_name!r} reports no batch accuracy: it cannot use until= phases"
            )
        return self.gate.update(step, mean(logs["accuracy"]))

    def state(self) -> dict:
        return {"gate": self.gate.state()}  # curriculum phases that ended early (the epoch's order depends on them)

    def restore(self, progress: dict) -> None:
        self.gate = PhaseGate(self.cfg.curriculum, **progress.get("gate", {}))


class StreamPlan:
    """One epoch of `steps` steps over fresh examples 0, 1, 2, ...: step s takes ids s*B .. (s+1)*B - 1 (MAE's
    unlabelled scenes, generated on the fly, never repeated)."""

    def __init__(self, steps: int, batch_size: int):
        self.steps, self.batch_size = steps, batch_size

    def planned_steps(self) -> int:
        return self.steps

    def order(self, epoch: int) -> Sequence[int]:
        return range(self.steps * self.batch_size)

    def observe(self, epoch: int, step: int, logs: dict, mean: Callable[[float], float]) -> dict | None:
        return None

    def state(self) -> dict:
        return {}

    def restore(self, progress: dict) -> None:
        pass
