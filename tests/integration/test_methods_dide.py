"""DiDE and the label baselines through the method registry: gradients reach both student towers and never the
teacher; the attention term trains the virtual cross-attention; runs size the student like the teacher."""

import pytest
import torch

from workbench.data import Collator, load_dataset
from workbench.methods import get_method
from workbench.methods.dide import DiDEObjective
from workbench.methods.labels import LabelObjective
from workbench.models import create_model

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


def make_recipe(name, teacher, **overrides):
    """The objective a method's run trains with (`none` learns from no teacher)."""
    cls = DiDEObjective if name.startswith("dide") else LabelObjective
    return cls(name, get_method(name).config(**overrides), teacher if name != "none" else None)


def test_dide_gradients_reach_both_towers_not_the_teacher(tokenizer):
    data = load_dataset("shapes-vqa", "val", 8)
    batch = Collator(tokenizer, 64)([data[i] for i in range(8)])
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    student = create_model("dual", len(tokenizer), len(data.labels), **TINY)
    recipe = make_recipe("dide", teacher)
    loss, logs = recipe.loss(student, batch)
    assert torch.isfinite(loss) and logs["t2i"] > 0 and logs["i2t"] > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    q_text = student.text_tower.encoder.layer[-1].attention.self.query.weight.grad
    k_image = student.image_tower.layers[-1].attention.k_proj.weight.grad
    assert q_text is not None and q_text.abs().sum() > 0
    assert k_image is not None and k_image.abs().sum() > 0


@pytest.mark.parametrize("name", ["none", "kd", "dide"])
def test_recipes_report_the_students_batch_accuracy_for_until_phases(name, tokenizer):
    data = load_dataset("shapes-vqa", "val", 8)
    batch = Collator(tokenizer, 64)([data[i] for i in range(8)])
    torch.manual_seed(0)
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    student = create_model("dual", len(tokenizer), len(data.labels), **TINY)
    _, logs = make_recipe(name, teacher).loss(student, batch)
    with torch.no_grad():
        top = student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.argmax(-1)
    assert logs["accuracy"] == (top == batch.labels).float().mean().item()  # the gold labels, not the teacher's
    batch.labels = top  # every answer right
    assert make_recipe(name, teacher).loss(student, batch)[1]["accuracy"] == 1.0


def test_attention_term_alone_trains_the_virtual_cross_attention(tokenizer):
    """With only the attention KL, a few steps bring the student's maps closer to the teacher's."""
    torch.manual_seed(0)
    data = load_dataset("shapes-vqa", "val", 32)
    batch = Collator(tokenizer, 64)([data[i] for i in range(32)])
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    student = create_model("dual", len(tokenizer), len(data.labels), **TINY)
    recipe = make_recipe("dide", teacher, soft=0.0)
    opt = torch.optim.Adam(student.parameters(), 3e-3)
    first = None
    for _ in range(30):
        loss, _ = recipe.loss(student, batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_distill_cli_writes_a_student_with_the_teachers_tokenizer(tmp_path, tokenizer):
    import json

    from workbench.cli import main as cli
    from workbench.models.io import save_checkpoint

    data = load_dataset("shapes-vqa", "val", 4)
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    save_checkpoint(teacher, tokenizer, tmp_path / "teacher", {"task": "vqa", "labels": list(data.labels)})
    args = [
        "distill",
        "--teacher",
        str(tmp_path / "teacher"),
        "--recipe",
        "dide",
        "--dataset",
        "shapes-vqa",
        "--out",
        str(tmp_path / "student"),
        "--train-size",
        "96",
        "--val-size",
        "32",
        "--test-size",
        "32",
        "--batch-size",
        "32",
        "--hidden-size",
        "32",
        "--num-layers",
        "2",
        "--num-heads",
        "2",
        "--no-progress",
    ]
    assert cli(args) == 0
    meta = json.loads((tmp_path / "student" / "model" / "workbench.json").read_text())
    assert meta["kind"] == "dual" and meta["recipe"] == "dide"
    assert meta["train_config"]["teacher"] == str(tmp_path / "teacher")
    # which teacher it learned from, so the results grid can tell when that teacher has been rebuilt
    from workbench.models.io import weights_fingerprint

    assert meta["teacher_fingerprint"] == weights_fingerprint(tmp_path / "teacher")
    log = [json.loads(x) for x in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy" in x for x in log)


def _tiny_teacher(tmp_path, tokenizer, **size):
    from workbench.models.io import save_checkpoint

    data = load_dataset("shapes-vqa", "val", 4)
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **{**TINY, **size})
    save_checkpoint(teacher, tokenizer, tmp_path / "teacher", {"task": "vqa", "labels": list(data.labels)})
    return tmp_path / "teacher"


def test_student_takes_the_teachers_size_and_patch_grid(tmp_path, tokenizer):
    """Maps are compared key by key: an 8-pixel teacher needs an 8-pixel student (64 patches each)."""
    from workbench.methods import distill
    from workbench.models.io import load_checkpoint
    from workbench.train import TrainConfig

    teacher = _tiny_teacher(tmp_path, tokenizer, patch_size=8)
    cfg = TrainConfig(
        dataset="shapes-vqa", out=str(tmp_path / "s"), teacher=str(teacher), recipe="dide",
        train_size=32, val_size=16, test_size=16, batch_size=16, max_steps=2,
    )  # fmt: skip
    distill(cfg, progress=False)
    student = load_checkpoint(tmp_path / "s" / "model").model
    assert student.vision_config.patch_size == 8
    assert student.text_config.hidden_size == 32 and student.text_config.num_hidden_layers == 2


def test_dide_pt_runs_a_matching_stage_then_fine_tunes_from_it(tmp_path, tokenizer):
    import json

    from workbench.cli import main as cli

    teacher = _tiny_teacher(tmp_path, tokenizer)
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide-pt", "--pretrain-steps", "3"]
    args += ["--out", str(tmp_path / "s"), "--train-size", "64", "--val-size", "16", "--test-size", "16"]
    args += ["--batch-size", "16", "--no-progress", "--curriculum", "counting:2", "--oversample", "relation:2"]
    assert cli(args) == 0
    stage1 = json.loads((tmp_path / "s" / "pretrain" / "model" / "workbench.json").read_text())
    # the task's curriculum and oversampling are the fine-tuning's: the captions have no "counting" questions
    assert stage1["train_config"]["curriculum"] == [] and stage1["train_config"]["oversample"] == {}
    final = json.loads((tmp_path / "s" / "model" / "workbench.json").read_text())
    assert stage1["dataset"] == "shapes-itm" and stage1["steps"] == 3
    assert stage1["train_config"]["recipe_args"]["soft"] == 0.0  # the teacher has no matching head
    assert final["recipe"] == "dide-pt" and final["dataset"] == "shapes-vqa"
    assert final["train_config"]["curriculum"] == [[["counting"], 2]] and final["steps"] == 2 + 64 // 16
    assert final["train_config"]["oversample"] == {"relation": 2}
    assert final["train_config"]["init_from"] == str(tmp_path / "s" / "pretrain" / "model")
    log = [json.loads(x) for x in (tmp_path / "s" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert all("soft" not in x for x in log)


def test_a_shallower_text_tower_is_distilled_from_the_teachers_last_layer(tmp_path, tokenizer):
    import json

    from workbench.cli import main as cli
    from workbench.models.io import load_checkpoint

    teacher = _tiny_teacher(tmp_path, tokenizer)
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide", "--dataset", "shapes-vqa",
            "--out", str(tmp_path / "s"), "--text-layers", "1", "--train-size", "64", "--val-size", "16",
            "--test-size", "16", "--batch-size", "16", "--max-steps", "4", "--no-progress"]  # fmt: skip
    assert cli(args) == 0
    student = load_checkpoint(tmp_path / "s" / "model").model
    assert student.text_config.num_hidden_layers == 1 and student.vision_config.num_hidden_layers == 2
    log = [json.loads(x) for x in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["t2i"] > 0 and x["i2t"] > 0 for x in log if "t2i" in x)  # the attention terms are live


def test_dide_pt_from_a_two_image_stem_teacher_matches_on_one_image_then_fine_tunes_on_two(tmp_path, tokenizer):
    """The NLVR teacher reads two images; the matching stage's captions have one (it crashed before)."""
    from workbench.methods import distill
    from workbench.methods.dide import one_image_view
    from workbench.models import create_model, for_task
    from workbench.models.io import load_checkpoint, save_checkpoint
    from workbench.train import TrainConfig

    data = load_dataset("shapes-nlvr", "val", 4)
    one = create_model("fusion", len(tokenizer), 3, **{**TINY, "conv_stem": [4]})
    two = for_task(one, 2, len(data.labels))
    assert two.stem is not None  # the stem survives the change of task
    save_checkpoint(
        two, tokenizer, tmp_path / "teacher", {"task": "nlvr", "labels": list(data.labels), "num_images": 2}
    )
    view = one_image_view(two)
    assert view.num_images == 1 and two.num_images == 2  # a copy: the teacher itself is unchanged
    cfg = TrainConfig(
        dataset="shapes-nlvr", out=str(tmp_path / "s"), teacher=str(tmp_path / "teacher"), recipe="dide-pt",
        train_size=32, val_size=16, test_size=16, batch_size=16, max_steps=2,
    )  # fmt: skip
    distill(cfg, get_method("dide-pt").config(pretrain_steps=2), progress=False)
    student = load_checkpoint(tmp_path / "s" / "model").model
    assert student.num_images == 2 and student.stem is not None
