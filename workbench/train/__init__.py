"""Training: one loop (`Trainer`, on `accelerate`) for teachers, every distillation method and MAE pre-training.

- `config`: `TrainConfig`, the run as data (`train_config.json`, `TrainConfig.from_json`);
- `objective`: the objective contract (`loss(model, batch) -> (loss, logs)`) and `HardLabels`;
- `trainer`: `Trainer` (setup, step, log, evaluate, checkpoint, fit), mixed precision, gradient accumulation;
- `plan`, `sampling`, `curriculum`, `feed`: which examples each step takes, and how they reach it;
- `state`: the atomic training-state checkpoint behind exact `--resume`;
- `supervised`: `train(cfg, recipe)`, a labelled-data run from config to final checkpoint.
"""

from workbench.train.config import MIXED_PRECISION, TASK_OF, TrainConfig
from workbench.train.curriculum import PhaseGate, curriculum_order, curriculum_phases, parse_curriculum, phase_modes
from workbench.train.feed import CollatedExamples, StepBatches, step_batches
from workbench.train.objective import HardLabels, Objective, batch_accuracy
from workbench.train.plan import EpochPlan, StreamPlan
from workbench.train.sampling import epoch_order, parse_oversample, sampled_order
from workbench.train.state import latest_state, load_state, save_state
from workbench.train.supervised import (
    adamw,
    build_model_and_tokenizer,
    centre_on_data,
    claim_output,
    train,
    warm_start,
)
from workbench.train.trainer import Trainer, lr_lambda, make_accelerator, set_seed

__all__ = [
    "MIXED_PRECISION",
    "TASK_OF",
    "CollatedExamples",
    "EpochPlan",
    "HardLabels",
    "Objective",
    "PhaseGate",
    "StepBatches",
    "StreamPlan",
    "TrainConfig",
    "Trainer",
    "adamw",
    "batch_accuracy",
    "build_model_and_tokenizer",
    "centre_on_data",
    "claim_output",
    "curriculum_order",
    "curriculum_phases",
    "epoch_order",
    "latest_state",
    "load_state",
    "lr_lambda",
    "make_accelerator",
    "parse_curriculum",
    "parse_oversample",
    "phase_modes",
    "sampled_order",
    "save_state",
    "set_seed",
    "step_batches",
    "train",
    "warm_start",
]
