"""DiDE and the label baselines through the method registry: gradients reach both student towers and never the
teacher; the attention term trains the virtual cross-attention; runs size the student like the teacher."""

import shutil
from dataclasses import replace

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


def _tiny_matcher(tmp_path, tokenizer, **size):
    """A fusion model with an image-text matching head (labels mismatch, match), as assets/shapes-itm-teacher."""
    from workbench.models.io import save_checkpoint

    matcher = create_model("fusion", len(tokenizer), 2, **{**TINY, **size})
    save_checkpoint(matcher, tokenizer, tmp_path / "matcher", {"task": "itm", "labels": ["mismatch", "match"]})
    return tmp_path / "matcher"


def test_dide_pt_distils_the_matching_teacher_then_fine_tunes_from_the_task_teacher(tmp_path, tokenizer):
    import json

    from workbench.cli import main as cli

    teacher, matcher = _tiny_teacher(tmp_path, tokenizer), _tiny_matcher(tmp_path, tokenizer)
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide-pt", "--pretrain-steps", "3"]
    args += ["--pretrain-teacher", str(matcher), "--log-every", "1"]
    args += ["--out", str(tmp_path / "s"), "--train-size", "64", "--val-size", "16", "--test-size", "16"]
    args += ["--batch-size", "16", "--no-progress", "--curriculum", "counting:2", "--oversample", "relation:2"]
    assert cli(args) == 0
    stage1 = json.loads((tmp_path / "s" / "pretrain" / "model" / "workbench.json").read_text())
    # the task's curriculum and oversampling are the fine-tuning's: the captions have no "counting" questions
    assert stage1["train_config"]["curriculum"] == [] and stage1["train_config"]["oversample"] == {}
    assert stage1["dataset"] == "shapes-itm-mixed" and stage1["steps"] == 3
    assert stage1["train_config"]["teacher"] == str(matcher)  # stage 1 learns from the matching teacher
    assert stage1["train_config"]["recipe_args"]["soft"] == 1.0 and stage1["train_config"]["recipe_args"]["hard"] == 0
    log = [json.loads(x) for x in (tmp_path / "s" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in log if "t2i" in x]
    assert steps and all(x["soft"] > 0 and x["t2i"] > 0 and x["i2t"] > 0 and "ce" not in x for x in steps)
    final = json.loads((tmp_path / "s" / "model" / "workbench.json").read_text())
    assert final["recipe"] == "dide-pt" and final["dataset"] == "shapes-vqa"
    assert final["train_config"]["teacher"] == str(teacher)  # stage 2 is dide from the task teacher
    assert final["train_config"]["curriculum"] == [[["counting"], 2]] and final["steps"] == 2 + 64 // 16
    assert final["train_config"]["oversample"] == {"relation": 2}
    assert final["train_config"]["init_from"] == str(tmp_path / "s" / "pretrain" / "model")
    # the matching teacher's weights too, so the results grid can tell a run of a since-rebuilt one
    from workbench.models.io import weights_fingerprint

    assert final["teacher_fingerprints"]["pretrain_teacher"] == weights_fingerprint(matcher)
    # the model records its matching stage's time, so a shipped copy of it (no `pretrain` folder) counts the run whole
    assert final["earlier_stage_seconds"] == stage1["train_seconds"] > 0
    assert "earlier_stage_seconds" not in stage1


def test_dide_pt_takes_a_matching_teacher_of_the_default_vocabulary_under_a_reworded_task_teacher(tmp_path, tokenizer):
    """The shipped case: the matching teacher reads the default vocabulary, the task teacher (trained on reworded
    text) the same ids plus appended words. Both stages read the task teacher's tokenizer, so stage 2 starts from
    an embedding of the right size and the reworded words keep their ids."""
    from workbench.data.vocab import build_tokenizer
    from workbench.methods import distill
    from workbench.models.io import load_checkpoint
    from workbench.train import TrainConfig

    reworded = build_tokenizer(paraphrase=True)
    assert len(reworded) > len(tokenizer)
    teacher = _tiny_teacher(tmp_path, reworded)
    matcher = _tiny_matcher(tmp_path, tokenizer)
    cfg = TrainConfig(
        dataset="shapes-vqa", out=str(tmp_path / "s"), teacher=str(teacher), recipe="dide-pt", paraphrase=True,
        train_size=32, val_size=16, test_size=16, batch_size=16, max_steps=2,
    )  # fmt: skip
    distill(cfg, get_method("dide-pt").config(pretrain_steps=2, pretrain_teacher=str(matcher)), progress=False)
    for stage in (tmp_path / "s" / "pretrain" / "model", tmp_path / "s" / "model"):
        ck = load_checkpoint(stage)
        assert ck.tokenizer.get_vocab() == reworded.get_vocab(), stage
        assert ck.model.text_tower.embeddings.word_embeddings.num_embeddings == len(reworded), stage


def test_dide_pt_refuses_a_matching_teacher_whose_token_ids_differ(tmp_path, tokenizer, capsys):
    from transformers import BertTokenizer

    from workbench.cli import main as cli

    vocab = list(tokenizer.get_vocab())
    vocab[-1], vocab[-2] = vocab[-2], vocab[-1]  # two words swap ids: the teacher would read another word
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    renumbered = BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)
    teacher, matcher = _tiny_teacher(tmp_path, tokenizer), _tiny_matcher(tmp_path, renumbered)
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide-pt", "--pretrain-teacher", str(matcher)]
    args += ["--out", str(tmp_path / "s"), "--train-size", "32", "--batch-size", "16", "--no-progress"]
    assert cli(args) == 2
    assert "must have the same id in the task teacher's" in capsys.readouterr().err
    assert not (tmp_path / "s" / "pretrain").exists()


def test_the_task_attention_ablation_learns_gold_match_labels_and_the_task_teachers_attention(tmp_path, tokenizer):
    import json

    from workbench.cli import main as cli

    teacher = _tiny_teacher(tmp_path, tokenizer)
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide-pt-task-attn", "--pretrain-steps", "3"]
    args += ["--out", str(tmp_path / "s"), "--train-size", "32", "--val-size", "16", "--test-size", "16"]
    args += ["--batch-size", "16", "--no-progress", "--log-every", "1"]
    assert cli(args) == 0
    stage1 = json.loads((tmp_path / "s" / "pretrain" / "model" / "workbench.json").read_text())
    assert stage1["dataset"] == "shapes-itm" and stage1["train_config"]["teacher"] == str(teacher)
    assert stage1["train_config"]["recipe_args"]["soft"] == 0.0  # the task teacher has no matching head
    log = [json.loads(x) for x in (tmp_path / "s" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert any("ce" in x for x in log) and all("soft" not in x for x in log)


def _matching_batch(tokenizer, n=8):
    data = load_dataset("shapes-itm-mixed", "val", n)
    return Collator(tokenizer, 64)([data[i] for i in range(n)])


def _log_softmax(z):
    import numpy as np

    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_the_matching_stage_loss_is_the_kl_of_the_matching_teachers_soft_labels(tokenizer):
    """Worked by hand on a tiny model: KL(softmax(z_T) || softmax(z_S)) over (mismatch, match), batch mean."""
    import numpy as np

    from workbench.methods.dide import matching_stage

    torch.manual_seed(0)
    batch = _matching_batch(tokenizer)
    matcher = create_model("fusion", len(tokenizer), 2, **TINY).eval()
    student = create_model("dual", len(tokenizer), 2, **TINY).eval()
    with torch.no_grad():
        z_t = matcher(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.numpy()
        z_s = student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.numpy()
    log_t, log_s = _log_softmax(z_t), _log_softmax(z_s)
    by_hand = float((np.exp(log_t) * (log_t - log_s)).sum(-1).mean())
    assert by_hand > 1e-4  # two random models disagree
    alone = DiDEObjective("dide", matching_stage(get_method("dide-pt").config(t2i=0.0, i2t=0.0)), matcher)
    loss, logs = alone.loss(student, batch)
    assert loss.item() == pytest.approx(by_hand, abs=1e-5) and logs["soft"] == pytest.approx(by_hand, abs=1e-5)
    assert "ce" not in logs  # no gold labels in the stage
    full = DiDEObjective("dide", matching_stage(get_method("dide-pt").config()), matcher)
    loss, logs = full.loss(student, batch)  # plus the matching teacher's own attention, t2i and i2t at weight 1
    assert logs["t2i"] > 0 and logs["i2t"] > 0
    assert loss.item() == pytest.approx(by_hand + logs["t2i"] + logs["i2t"], abs=1e-5)


def test_the_matching_gradient_vanishes_when_the_student_matches_like_the_teacher(tokenizer):
    """Both heads output constant logits (last layer's weights zeroed): equal biases give equal distributions on
    every pair, so no gradient; another bias gives d loss / d bias = p_student - p_teacher."""
    import numpy as np

    from workbench.methods.dide import matching_stage

    torch.manual_seed(0)
    batch = _matching_batch(tokenizer)
    matcher = create_model("fusion", len(tokenizer), 2, **TINY).eval()
    student = create_model("dual", len(tokenizer), 2, **TINY).eval()
    teacher_bias = [0.3, -0.7]
    with torch.no_grad():
        for model in (matcher, student):
            model.classifier[-1].weight.zero_()
            model.classifier[-1].bias.copy_(torch.tensor(teacher_bias))
    objective = DiDEObjective("dide", matching_stage(get_method("dide-pt").config(t2i=0.0, i2t=0.0)), matcher)
    loss, _ = objective.loss(student, batch)
    loss.backward()
    grads = [p.grad.abs().max().item() for p in student.parameters() if p.grad is not None]
    assert loss.item() == pytest.approx(0.0, abs=1e-7) and grads and max(grads) < 1e-7
    student.zero_grad()
    with torch.no_grad():
        student.classifier[-1].bias.copy_(torch.tensor([0.3, 0.3]))
    loss, _ = objective.loss(student, batch)
    loss.backward()
    p_t, p_s = np.exp(_log_softmax(teacher_bias)), np.array([0.5, 0.5])
    assert loss.item() == pytest.approx(float((p_t * np.log(p_t / p_s)).sum()), abs=1e-6)
    assert student.classifier[-1].bias.grad.numpy() == pytest.approx(p_s - p_t, abs=1e-6)  # [-0.2311, 0.2311]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --pretrain-teacher"),
        (["--pretrain-teacher", "TASK"], "shapes-itm-mixed has 2 (mismatch, match)"),
        (["--pretrain-teacher", "MATCHER8"], "does not fit the student (patch_size 8 vs 16"),
    ],
)
def test_dide_pt_refuses_a_missing_or_unfitting_matching_teacher_before_training(
    tmp_path, tokenizer, capsys, extra, message
):
    from workbench.cli import main as cli

    teacher = _tiny_teacher(tmp_path, tokenizer)
    paths = {"TASK": str(teacher), "MATCHER8": str(_tiny_matcher(tmp_path, tokenizer, patch_size=8))}
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide-pt", "--out", str(tmp_path / "s")]
    args += ["--train-size", "32", "--batch-size", "16", "--no-progress", *[paths.get(a, a) for a in extra]]
    assert cli(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s" / "pretrain").exists() and not (tmp_path / "s" / "model").exists()


def test_layers_beyond_a_shallow_text_tower_fail_before_training(tmp_path, tokenizer, capsys):
    """`--layers 0 1 --text-layers 1` used to distil teacher layer 0 only; now it is an error naming the depths."""
    from workbench.cli import main as cli

    teacher = _tiny_teacher(tmp_path, tokenizer)
    args = ["distill", "--teacher", str(teacher), "--recipe", "dide", "--dataset", "shapes-vqa", "--layers", "0", "1",
            "--text-layers", "1", "--out", str(tmp_path / "s"), "--train-size", "32", "--batch-size", "16",
            "--no-progress"]  # fmt: skip
    assert cli(args) == 2
    assert "student text-tower layer 1 does not exist; it has 1 layer" in capsys.readouterr().err
    assert not (tmp_path / "s" / "model").exists()


def test_a_layer_map_distils_the_named_teacher_layer_into_the_named_student_layers(tokenizer):
    from workbench import losses

    torch.manual_seed(0)
    data = load_dataset("shapes-vqa", "val", 8)
    batch = Collator(tokenizer, 64)([data[i] for i in range(8)])
    teacher = create_model("fusion", len(tokenizer), len(data.labels), **TINY).eval()
    student = create_model("dual", len(tokenizer), len(data.labels), **TINY).eval()
    with torch.no_grad():
        t = teacher(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(0, 1))
        s = student(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(0, 1))

    def kl(lt, lq, lk):
        t_t2i, t_i2t = losses.teacher_cross_scores(*t.qk[0][lt], text_len=t.text_len)
        s_t2i, s_i2t = losses.student_cross_scores(s.qk_text[lq], s.qk_image[0][lk])
        mask = batch.attention_mask
        t2i = losses.attention_kl(s_t2i, t_t2i, query_mask=mask)
        return (t2i + losses.attention_kl(s_i2t, t_i2t, key_mask=mask)).item()

    def loss(layer_map):
        config = get_method("dide").config(soft=0.0, layer_map=layer_map)
        return DiDEObjective("dide", config, teacher).loss(student, batch)[0].item()

    assert loss(("1:0",)) == pytest.approx(kl(1, 0, 0), abs=1e-5)
    assert loss(("0:0:1",)) == pytest.approx(kl(0, 0, 1), abs=1e-5)
    assert loss(("1:0", "0:1")) == pytest.approx(kl(1, 0, 0) + kl(0, 1, 1), abs=1e-5)
    assert abs(kl(1, 0, 0) - kl(0, 0, 0)) > 1e-3  # the teacher's layers differ, so the pairing is what is tested
    assert loss(()) == pytest.approx(kl(1, 1, 1), abs=1e-5)  # the default: each model's last layer


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


def test_the_task_attention_ablation_from_a_two_image_stem_teacher_fine_tunes_on_two_images(tmp_path, tokenizer):
    """The NLVR teacher reads two images; the ablation's captions have one (it crashed before)."""
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
        dataset="shapes-nlvr", out=str(tmp_path / "s"), teacher=str(tmp_path / "teacher"),
        recipe="dide-pt-task-attn", train_size=32, val_size=16, test_size=16, batch_size=16, max_steps=2,
    )  # fmt: skip
    distill(cfg, get_method("dide-pt-task-attn").config(pretrain_steps=2), progress=False)
    student = load_checkpoint(tmp_path / "s" / "model").model
    assert student.num_images == 2 and student.stem is not None


def test_dide_pt_for_a_two_image_task_matches_on_one_image_then_fine_tunes_on_two(tmp_path, tokenizer):
    """The matching teacher reads one image (the captions); the NLVR student then reads two."""
    from workbench.methods import distill
    from workbench.models import for_task
    from workbench.models.io import load_checkpoint, save_checkpoint
    from workbench.train import TrainConfig

    data = load_dataset("shapes-nlvr", "val", 4)
    two = for_task(create_model("fusion", len(tokenizer), 3, **TINY), 2, len(data.labels))
    save_checkpoint(
        two, tokenizer, tmp_path / "teacher", {"task": "nlvr", "labels": list(data.labels), "num_images": 2}
    )
    cfg = TrainConfig(
        dataset="shapes-nlvr", out=str(tmp_path / "s"), teacher=str(tmp_path / "teacher"), recipe="dide-pt",
        train_size=32, val_size=16, test_size=16, batch_size=16, max_steps=2,
    )  # fmt: skip
    config = get_method("dide-pt").config(pretrain_steps=2, pretrain_teacher=str(_tiny_matcher(tmp_path, tokenizer)))
    distill(cfg, config, progress=False)
    assert load_checkpoint(tmp_path / "s" / "pretrain" / "model").model.num_images == 1
    assert load_checkpoint(tmp_path / "s" / "model").model.num_images == 2


def test_a_dide_pt_run_whose_matching_teacher_was_rebuilt_since_it_started_is_not_resumed(
    tmp_path, tokenizer, monkeypatch
):
    """Its saved state (mid stage 1) or its finished stage 1 learned from the earlier matching teacher: resuming
    refuses with a clear error, whereas the same run with its teachers unchanged resumes and finishes."""
    from workbench.errors import WorkbenchError
    from workbench.methods import distill
    from workbench.models.io import save_checkpoint
    from workbench.train import TrainConfig

    teacher, matcher = _tiny_teacher(tmp_path, tokenizer), _tiny_matcher(tmp_path, tokenizer)
    cfg = TrainConfig(
        dataset="shapes-vqa", out=str(tmp_path / "s"), teacher=str(teacher), recipe="dide-pt", save_every=2,
        train_size=32, val_size=16, test_size=16, batch_size=16, max_steps=2,
    )  # fmt: skip
    config = get_method("dide-pt").config(pretrain_steps=4, pretrain_teacher=str(matcher))
    calls, real = [], DiDEObjective.loss

    def crash_at_step_3(self, model, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real(self, model, batch)

    monkeypatch.setattr(DiDEObjective, "loss", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        distill(cfg, config, progress=False)
    assert (tmp_path / "s" / "pretrain" / "state").is_dir()
    torch.manual_seed(1)
    rebuilt = create_model("fusion", len(tokenizer), 2, **TINY)
    save_checkpoint(rebuilt, tokenizer, matcher, {"task": "itm", "labels": ["mismatch", "match"]})
    with pytest.raises(WorkbenchError, match=r"pretrain was started against other teacher weights .*matcher"):
        distill(cfg, config, resume=True, progress=False)

    # the same crash, teachers unchanged: resumes and finishes; then a matching teacher rebuilt after stage 1
    calls.clear()
    cfg = replace(cfg, out=str(tmp_path / "t"))
    with pytest.raises(KeyboardInterrupt):
        distill(cfg, config, progress=False)
    assert distill(cfg, config, resume=True, progress=False)["steps"] == 2
    torch.manual_seed(2)
    save_checkpoint(create_model("fusion", len(tokenizer), 2, **TINY), tokenizer, matcher,
                    {"task": "itm", "labels": ["mismatch", "match"]})  # fmt: skip
    shutil.rmtree(tmp_path / "t" / "model")  # stage 2 to redo: its finished stage 1 is of the earlier teacher
    with pytest.raises(WorkbenchError, match=r"pretrain was started against other teacher weights"):
        distill(cfg, config, resume=True, progress=False)
