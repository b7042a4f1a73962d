"""MAD's frozen unimodal teachers (workbench/models/unimodal.py) and MAE pre-training (workbench/mae.py):
loading from local Hugging Face folders, token alignment, row-major patch order."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizer, CLIPVisionConfig, CLIPVisionModel, ViTMAEForPreTraining

from workbench.mae import mae_config, pretrain_mae
from workbench.models.unimodal import (
    TextFeatures,
    TextTeacher,
    VisionTeacher,
    align_text_features,
    span_overlap,
    student_offsets,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.one_thread)


# a teacher vocabulary that splits "circle" into two pieces and keeps "shapes" whole (the student's
# workbench tokenizer does the opposite: "circle" whole, "shapes" -> "shape" "##s")
TEACHER_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "how", "many", "shapes", "the", "red", "circ", "##le"]
TEACHER_VOCAB += ["is", "left", "of", "blue", "square", "?", ","]


def tiny_text_folder(path, hidden=16):
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(TEACHER_VOCAB)}, do_lower_case=True)
    tok.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(TEACHER_VOCAB), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(path)
    return path


def tiny_mae_folder(path, image_size=64, patch_size=8, layers=1, hidden=16):
    torch.manual_seed(0)
    config = mae_config(
        image_size, patch_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, decoder_hidden_size=8, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=16,
    )  # fmt: skip
    ViTMAEForPreTraining(config).save_pretrained(path)
    return path


def tiny_clip_folder(path, image_size=64, patch_size=16, layers=0, hidden=16):
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size,
    )  # fmt: skip
    CLIPVisionModel(config).save_pretrained(path)
    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": clip_mean, "image_std": clip_std}))
    return path


# ----------------------------------------------------------------------------------------------
# text


def test_span_overlap_and_hand_made_alignment():
    # one text, "ab cd": teacher tokens [CLS] "ab" "c" "##d" [SEP]; student tokens [CLS] "ab" "cd" [SEP] [PAD]
    t_tokens = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 2.0], [0.0, 4.0], [7.0, 7.0]]])
    t_offsets = torch.tensor([[[0, 0], [0, 2], [3, 4], [4, 5], [0, 0]]])
    teacher = TextFeatures(t_tokens, torch.ones(1, 5, dtype=torch.bool), t_offsets, torch.tensor([[5.0, 6.0]]))
    s_offsets = torch.tensor([[[0, 0], [0, 2], [3, 5], [0, 0], [0, 0]]])
    assert span_overlap(s_offsets, t_offsets)[0].int().tolist() == [
        [0, 0, 0, 0, 0],  # [CLS]: an empty span overlaps nothing
        [0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    aligned, mask = align_text_features(teacher, s_offsets, cls_first=True)
    assert mask[0].tolist() == [True, True, True, False, False]
    assert torch.equal(aligned[0, 0], torch.tensor([5.0, 6.0]))  # [CLS] <- the sentence feature
    assert torch.equal(aligned[0, 1], torch.tensor([1.0, 0.0]))  # word to word
    assert torch.equal(aligned[0, 2], torch.tensor([0.0, 3.0]))  # mean of the teacher's two pieces
    assert torch.equal(aligned[0, 3:], torch.zeros(2, 2))
    _, mask = align_text_features(teacher, s_offsets, cls_first=False)
    assert mask[0].tolist() == [False, True, True, False, False]


def test_text_teacher_from_a_tiny_folder_aligns_to_the_student_tokens(tmp_path, tokenizer):
    teacher = TextTeacher.from_folder(tiny_text_folder(tmp_path / "bert"))
    texts = ["how many shapes?", "is the red circle left of the blue square?"]
    feats = teacher.encode(texts)
    assert feats.tokens.shape[0] == 2 and feats.tokens.shape[-1] == teacher.dim == 16
    m = feats.mask[..., None].float()
    assert torch.allclose(feats.sentence, (feats.tokens * m).sum(1) / m.sum(1))

    enc = tokenizer(texts, padding=True, return_tensors="pt")
    offsets = student_offsets(tokenizer, texts, enc["input_ids"])
    aligned, mask, _ = teacher.for_student(texts, offsets)
    s_tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]]
    t_tokens = [teacher.tokenizer.convert_ids_to_tokens(ids) for ids in teacher.tokenizer(texts)["input_ids"]]
    assert s_tokens[0][:6] == ["[CLS]", "how", "many", "shape", "##s", "?"]
    assert t_tokens[0] == ["[CLS]", "how", "many", "shapes", "?", "[SEP]"]
    # both student pieces of "shapes" take the teacher's whole word
    assert torch.allclose(aligned[0, 3], feats.tokens[0, 3]) and torch.allclose(aligned[0, 4], feats.tokens[0, 3])
    # the student's whole "circle" takes the mean of the teacher's "circ" "##le"
    i_s, i_t = s_tokens[1].index("circle"), t_tokens[1].index("circ")
    assert torch.allclose(aligned[1, i_s], feats.tokens[1, i_t : i_t + 2].mean(0))
    # every real student token has a target except [SEP]; padding has none
    real = enc["attention_mask"].bool()
    sep = enc["input_ids"] == tokenizer.sep_token_id
    assert torch.equal(mask, real & ~sep)


def test_text_teacher_caches_per_text(tmp_path):
    teacher = TextTeacher.from_folder(tiny_text_folder(tmp_path / "bert"))
    calls = []
    run = teacher._run
    teacher._run = lambda texts: calls.append(list(texts)) or run(texts)
    first = teacher.encode(["the red circle", "how many shapes?"])
    again = teacher.encode(["how many shapes?", "the red circle", "the blue square"])
    assert calls == [["the red circle", "how many shapes?"], ["the blue square"]]
    assert torch.allclose(again.sentence[0], first.sentence[1]) and torch.allclose(again.sentence[1], first.sentence[0])


def test_student_offsets_refuses_ids_it_cannot_reproduce(tokenizer):
    enc = tokenizer(["the red circle"], return_tensors="pt")
    with pytest.raises(ValueError, match="reproduce"):
        student_offsets(tokenizer, ["the blue circle"], enc["input_ids"])


def test_minilm_teacher_loads_from_the_package(tokenizer):
    teacher = TextTeacher.minilm()
    assert teacher.dim == 384 and not any(p.requires_grad for p in teacher.parameters())
    texts = ["is there a red circle?", "is there a crimson ball?", "how many triangles are there?"]
    feats = teacher.encode(texts)
    assert feats.tokens.shape[-1] == 384 and feats.sentence.shape == (3, 384)
    s = torch.nn.functional.normalize(feats.sentence, dim=-1)
    assert s[0] @ s[1] > s[0] @ s[2]  # a real sentence encoder: the paraphrase is closer
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    _, mask, _ = teacher.for_student(texts, student_offsets(tokenizer, texts, enc["input_ids"]))
    sep = enc["input_ids"] == tokenizer.sep_token_id
    assert torch.equal(mask, enc["attention_mask"].bool() & ~sep)  # every word of our questions is aligned


# ----------------------------------------------------------------------------------------------
# vision


def _pixels(n=2, size=64):
    torch.manual_seed(1)
    return torch.rand(n, 3, size, size) * 2 - 1


@pytest.mark.parametrize("kind", ["mae", "clip"])
def test_vision_teacher_patches_are_row_major(tmp_path, kind):
    """With no transformer layer a patch's state depends on that patch alone: changing the pixels of
    patch (row 1, col 2) must change state 1 * 4 + 2 and no other."""
    if kind == "mae":
        folder = tiny_mae_folder(tmp_path / kind, patch_size=16, layers=0)
    else:
        folder = tiny_clip_folder(tmp_path / kind, patch_size=16, layers=0)
    teacher = VisionTeacher.from_folder(folder)
    assert teacher.grid == (4, 4)
    x = _pixels()
    y = x.clone()
    y[:, :, 16:32, 32:48] = -y[:, :, 16:32, 32:48]
    a, mask = teacher(x)
    b, _ = teacher(y)
    assert a.shape == (2, 16, 16) and mask.all()
    changed = (a - b).abs().amax(dim=(0, 2)) > 1e-5
    assert changed.nonzero().flatten().tolist() == [1 * 4 + 2]


def test_mae_teacher_keeps_every_patch_and_pools_onto_the_student_grid(tmp_path):
    folder = tiny_mae_folder(tmp_path / "mae", patch_size=8, layers=1)
    assert json.loads((folder / "config.json").read_text())["mask_ratio"] == 0.75
    teacher = VisionTeacher.from_folder(folder)
    assert teacher.encoder.config.mask_ratio == 0.0 and teacher.grid == (8, 8)
    x = _pixels()
    own = teacher.patch_states(x)
    assert own.shape == (2, 64, 16)
    assert torch.equal(own, teacher.patch_states(x))  # deterministic: no random shuffle, no masking
    pooled, mask = teacher(x, grid=(4, 4))
    assert pooled.shape == (2, 16, 16) and mask.shape == (2, 16)
    grid = own.reshape(2, 4, 2, 4, 2, 16)  # [B, row, 2, col, 2, D]
    assert torch.allclose(pooled[:, 1 * 4 + 3], grid[:, 1, :, 3, :].mean(dim=(1, 2)), atol=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_vision_teacher_reads_the_folders_normalisation(tmp_path):
    teacher = VisionTeacher.from_folder(tiny_clip_folder(tmp_path / "clip"))
    assert torch.allclose(teacher.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    x = torch.zeros(1, 3, 64, 64)  # mid-grey in the workbench's [-1, 1]
    assert torch.allclose(teacher.preprocess(x), (0.5 - teacher.mean) / teacher.std)


def test_teacher_folder_errors_are_clear(tmp_path):
    from workbench.errors import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        VisionTeacher.from_folder(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="safetensors"):
        TextTeacher.from_folder(tmp_path / "bad")


# ----------------------------------------------------------------------------------------------
# MAE pre-training

TINY_MAE = dict(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, decoder_hidden_size=8,
    decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=16,
)  # fmt: skip


def test_pretrain_mae_writes_a_teacher_folder(tmp_path):
    meta = pretrain_mae(tmp_path / "mae", steps=3, batch_size=4, progress=False, **TINY_MAE)
    folder = tmp_path / "mae"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "workbench.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert not (folder / "state").exists()
    saved = json.loads((folder / "workbench.json").read_text())
    assert saved["kind"] == "mae" and saved["steps"] == 3 and saved == meta
    assert 0 < saved["final_loss"] < 10
    teacher = VisionTeacher.from_folder(folder)
    feats, mask = teacher(_pixels(), grid=(4, 4))
    assert feats.shape == (2, 16, 16) and torch.isfinite(feats).all()
    with pytest.raises(FileExistsError):
        pretrain_mae(folder, steps=3, batch_size=4, progress=False, **TINY_MAE)


def test_pretrain_mae_resumes_exactly(tmp_path, monkeypatch):
    from workbench import mae
    from workbench.mae import MAEConfig

    cfg = MAEConfig(save_every=2, warmup_steps=2)
    pretrain_mae(tmp_path / "a", steps=4, batch_size=4, progress=False, config=cfg, **TINY_MAE)

    real, calls = mae.scene_images, []

    def crash_on_step_3(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(mae, "scene_images", crash_on_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain_mae(tmp_path / "b", steps=4, batch_size=4, progress=False, config=cfg, **TINY_MAE)
    assert (tmp_path / "b" / "state").exists()
    monkeypatch.setattr(mae, "scene_images", real)
    pretrain_mae(tmp_path / "b", steps=4, batch_size=4, progress=False, config=cfg, resume=True, **TINY_MAE)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_mae_cli(tmp_path):
    from workbench.cli import main

    out = tmp_path / "mae"
    assert main(["pretrain-mae", "--out", str(out), "--steps", "2", "--batch-size", "2", "--no-progress"]) == 0
    assert json.loads((out / "workbench.json").read_text())["steps"] == 2
    assert VisionTeacher.from_folder(out).grid == (8, 8)
