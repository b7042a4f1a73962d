"""Curricula (`--curriculum`): phases that open the first epoch, each training only on examples of some
question types or tags, optionally drawn in turn ("balanced") and ended early once learned ("until=ACC",
`PhaseGate`)."""

from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.train.sampling import epoch_order, tagger


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
    tags_of, known = tagger(dataset, "--curriculum")
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
