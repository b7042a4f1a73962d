"""docs/adding-a-method.md is true: its method file, run as written, registers a method that the CLI, the
experiment grids and the trainer pick up with nothing else changed."""

import json
import re
from pathlib import Path

import pytest
import torch

from workbench.methods import METHODS, get_method, method_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-a-method.md"
TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


@pytest.fixture
def kd_mix():
    """The doc's first code block (the method file), executed as a module would be; unregistered afterwards."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace = {"__name__": "workbench.methods.kd_mix"}
    exec(compile(blocks[0], "workbench/methods/kd_mix.py", "exec"), namespace)
    yield namespace
    METHODS.pop("kd-mix", None)


def test_the_documented_method_registers_and_its_loss_is_hinton_kd(kd_mix, tokenizer):
    from workbench.data import Collator, load_dataset
    from workbench.models import create_model

    assert "kd-mix" in method_names(task="answer") and get_method("kd-mix").config().temperature == 4.0
    data = load_dataset("shapes-vqa", "val", 8)
    batch = Collator(tokenizer, 64)([data[i] for i in range(8)])
    torch.manual_seed(0)
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    student = create_model("dual", len(tokenizer), len(data.labels), **TINY)
    objective = kd_mix["MixedKD"]("kd-mix", get_method("kd-mix").config(), teacher)
    loss, logs = objective.loss(student, batch)
    # by hand: 0.5 * CE(gold) + 0.5 * T^2 * KL(softmax(z_T / T) || softmax(z_S / T)), T = 4
    with torch.no_grad():
        z_s = student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
        z_t = teacher(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
    p_t, log_p_s = (z_t / 4).softmax(-1), (z_s / 4).log_softmax(-1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(-1).mean() * 16
    ce = torch.nn.functional.cross_entropy(z_s, batch.labels)
    assert loss.item() == pytest.approx(0.5 * ce.item() + 0.5 * kl.item(), rel=1e-5)
    assert logs["soft"] == pytest.approx(kl.item(), rel=1e-5) and logs["ce"] == pytest.approx(ce.item(), rel=1e-5)


def test_the_cli_and_the_grids_pick_the_documented_method_up(kd_mix, tmp_path, capsys):
    import dataclasses

    from workbench.cli import main
    from workbench.experiments import get_grid
    from workbench.models.io import save_checkpoint

    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    help_text = capsys.readouterr().out
    assert "kd-mix" in help_text and "--temperature" in help_text

    # the grid entry of the doc: one row and the block that runs it
    grid = get_grid("dide")
    rows = {**grid.rows, "kd-mix": {"method": "kd-mix"}}
    grid = dataclasses.replace(grid, rows=rows, blocks=({"tasks": ("shapes-vqa",), "rows": ("kd-mix",)},))
    (run,) = grid.runs()
    assert run.method == "kd-mix" and run.method_config(tmp_path, tmp_path).temperature == 4.0

    # a two-step distillation through the CLI, from a tiny teacher
    from workbench.data import load_dataset
    from workbench.data.vocab import build_tokenizer
    from workbench.models import create_model

    tokenizer = build_tokenizer()
    labels = list(load_dataset("shapes-vqa", "val", 1).labels)
    teacher = create_model("fusion", len(tokenizer), len(labels), **TINY)
    save_checkpoint(teacher, tokenizer, tmp_path / "teacher", {"task": "vqa", "labels": labels})
    args = ["distill", "--recipe", "kd-mix", "--teacher", str(tmp_path / "teacher"), "--dataset", "shapes-vqa",
            "--out", str(tmp_path / "s"), "--temperature", "2", "--train-size", "32", "--val-size", "8",
            "--test-size", "8", "--batch-size", "16", "--max-steps", "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    meta = json.loads((tmp_path / "s" / "model" / "workbench.json").read_text())
    assert meta["recipe"] == "kd-mix" and meta["steps"] == 2
    assert meta["train_config"]["recipe_args"] == {"hard": 0.5, "soft": 0.5, "temperature": 2.0}
