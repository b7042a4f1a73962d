"""Every registered model: shapes, q/k capture, deterministic patches, save/load, real ViLT folders."""

import pytest
import torch
from transformers import ViltForQuestionAnswering

from workbench.data import Collator, load_dataset
from workbench.models import MODELS, create_model
from workbench.models.fusion import FusionTeacher, fusion_config
from workbench.models.io import load_checkpoint, save_checkpoint


def _batch(tokenizer, task="shapes-vqa", n=4):
    data = load_dataset(task, "val", 16)
    return Collator(tokenizer, 64)([data[i] for i in range(n)]), data


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("dataset", ["shapes-vqa", "shapes-nlvr"])
def test_forward_shapes_and_qk(kind, dataset, tokenizer, tiny_size):
    batch, data = _batch(tokenizer, dataset)
    n_img = batch.pixel_values.shape[1]
    model = create_model(kind, len(tokenizer), len(data.labels), n_img, **tiny_size).eval()
    out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(-1,))
    assert out.logits.shape == (4, len(data.labels))
    T, P, H = batch.input_ids.shape[1], 16, tiny_size["num_heads"]
    dh = tiny_size["hidden_size"] // H
    if kind == "fusion":
        assert len(out.qk) == n_img
        q, k = out.qk[0][1]
        assert q.shape == k.shape == (4, H, T + 1 + P, dh)
    else:
        q, k = out.qk_text[1]
        assert q.shape == (4, H, T, dh)
        q, k = out.qk_image[0][1]
        assert k.shape == (4, H, 1 + P, dh)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_save_load_round_trip_identical_logits(kind, tokenizer, tiny_size, tmp_path):
    batch, data = _batch(tokenizer)
    model = create_model(kind, len(tokenizer), len(data.labels), **tiny_size).eval()
    save_checkpoint(model, tokenizer, tmp_path / "ck", {"task": "vqa", "labels": list(data.labels)})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.meta["kind"] == kind and ck.labels == list(data.labels)
    with torch.no_grad():
        a = model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
        b = ck.model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
    assert torch.equal(a, b)
    assert ck.tokenizer(["is there a red circle?"])["input_ids"] == tokenizer(["is there a red circle?"])["input_ids"]


def test_fusion_patch_order_is_deterministic_and_row_major(tokenizer, tiny_size):
    """Attention column 1+T+r*G+c must belong to patch (r, c): perturb one patch, only its token moves."""
    batch, data = _batch(tokenizer)
    model = create_model("fusion", len(tokenizer), len(data.labels), **tiny_size).eval()
    with torch.no_grad():
        e1 = model.embed_image(batch.pixel_values[:, 0])
        e2 = model.embed_image(batch.pixel_values[:, 0])
        assert torch.equal(e1, e2)
        px = batch.pixel_values[:, 0].clone()
        r, c = 2, 1
        px[:, :, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = -1.0  # black out patch (2, 1)
        e3 = model.embed_image(px)
    changed = (e3 - e1).abs().sum(-1).gt(1e-6)  # [B, 1 + P]
    expected = torch.zeros_like(changed)
    expected[:, 1 + r * 4 + c] = True
    # a sample may already be black there? never: backgrounds are white and no object is black
    assert torch.equal(changed, expected)


def _tiny_hf_vilt(tmp_path, num_labels=5):
    config = fusion_config(vocab_size=120, hidden_size=32, num_layers=2, num_heads=2)
    config.id2label = {i: f"answer{i}" for i in range(num_labels)}
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    hf = ViltForQuestionAnswering(config).eval()
    with torch.no_grad():  # HF leaves these at zero: give them values so the test sees them used
        hf.vilt.embeddings.position_embeddings.normal_()
        hf.vilt.embeddings.cls_token.normal_()
    folder = tmp_path / "vilt"
    hf.save_pretrained(folder)
    from transformers import BertTokenizer

    BertTokenizer(
        vocab={
            w: i
            for i, w in enumerate(
                ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(97 + i) for i in range(26)] + ["is", "red"]
            )
        }
    ).save_pretrained(folder)
    return hf, folder


def test_real_vilt_folder_loads_as_teacher_with_same_logits(tmp_path):
    hf, folder = _tiny_hf_vilt(tmp_path)
    ck = load_checkpoint(folder)
    assert isinstance(ck.model, FusionTeacher)
    assert ck.meta["task"] == "vqa" and ck.labels == [f"answer{i}" for i in range(5)]
    ids = torch.tensor([[2, 31, 32, 3]])
    mask = torch.ones_like(ids)
    px = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, pixel_values=px).logits
        ours = ck.model(ids, mask, px[:, None]).logits
    # HF samples patches in random order; the encoder is permutation-equivariant, so logits agree
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_attention_and_qk_agree(tokenizer, tiny_size):
    """The captured q/k of a layer reproduce that layer's returned attention probabilities."""
    batch, data = _batch(tokenizer)
    model = create_model("fusion", len(tokenizer), len(data.labels), **tiny_size).eval()
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, output_attentions=True, qk_layers=(1,))
    q, k = out.qk[0][1]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    key_mask = torch.cat([batch.attention_mask, torch.ones(4, 17, dtype=torch.long)], 1)
    scores = scores.masked_fill(key_mask[:, None, None, :] == 0, float("-inf"))
    torch.testing.assert_close(scores.softmax(-1), out.attentions[0][1], atol=1e-5, rtol=1e-4)


def test_dual_towers_are_independent(tokenizer, tiny_size):
    batch, data = _batch(tokenizer)
    model = create_model("dual", len(tokenizer), len(data.labels), **tiny_size).eval()
    with torch.no_grad():
        img = model.encode_image(batch.pixel_values[:, 0])
        txt = model.encode_text(batch.input_ids, batch.attention_mask)
        cached = model(batch.input_ids, batch.attention_mask, image_states=[img]).logits
        full = model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits
    torch.testing.assert_close(cached, full)
    assert img.shape == (4, 17, tiny_size["hidden_size"]) and txt.shape[:2] == batch.input_ids.shape
    t, i = model.embed_for_retrieval(txt, img)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(4))
    assert model.logit_scale.requires_grad


def test_unknown_model_kind():
    with pytest.raises(ValueError, match="registered"):
        create_model("nope", 10, 2)


def test_for_task_turns_a_one_image_teacher_into_a_two_image_model(tokenizer):
    """--init-from a VQA teacher for NLVR: encoder kept, the second image's type embedding copied
    from the first image's (as ViLT did for NLVR2), a fresh two-image classifier."""
    from workbench.data import Collator, load_dataset
    from workbench.models import for_task

    torch.manual_seed(0)
    vqa = create_model("fusion", len(tokenizer), 5, hidden_size=32, num_layers=1, num_heads=2)
    nlvr = for_task(vqa, num_images=2, num_labels=2)
    assert nlvr.num_images == 2 and nlvr.config.modality_type_vocab_size == 3
    types = nlvr.vilt.embeddings.token_type_embeddings.weight
    old = vqa.vilt.embeddings.token_type_embeddings.weight
    assert torch.equal(types[:2], old) and torch.equal(types[2], old[1])
    q = "vilt.encoder.layer.0.attention.attention.query.weight"
    assert torch.equal(nlvr.state_dict()[q], vqa.state_dict()[q])
    data = load_dataset("shapes-nlvr", "val", 4)
    batch = Collator(tokenizer, 64)([data[i] for i in range(4)])
    assert nlvr(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.shape == (4, 2)
    student = for_task(create_model("dual", len(tokenizer), 5, hidden_size=32, num_layers=1, num_heads=2), 2, 2)
    assert student(batch.input_ids, batch.attention_mask, batch.pixel_values).logits.shape == (4, 2)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_conv_stem_keeps_the_token_grid_round_trips_and_maps_patches_row_major(kind, tokenizer, tiny_size, tmp_path):
    batch, data = _batch(tokenizer)
    size = dict(tiny_size, patch_size=16, conv_stem=[4, 8])
    model = create_model(kind, len(tokenizer), len(data.labels), **size).eval()
    assert model.stem is not None and any(name.startswith("stem.") for name, _ in model.named_parameters())
    out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(-1,))
    keys = out.qk[0][1][1] if kind == "fusion" else out.qk_image[0][1][1]
    assert keys.shape[2] - (batch.input_ids.shape[1] if kind == "fusion" else 0) == 1 + 16  # CLS + a 4x4 grid
    save_checkpoint(model, tokenizer, tmp_path / "ck", {"task": "vqa", "labels": list(data.labels)})
    loaded = load_checkpoint(tmp_path / "ck").model
    assert loaded.stem is not None
    with torch.no_grad():
        assert torch.equal(model(batch.input_ids, batch.attention_mask, batch.pixel_values).logits,
                           loaded(batch.input_ids, batch.attention_mask, batch.pixel_values).logits)  # fmt: skip
        # the centre of patch (row 1, column 2) feeds only that token (the stem's 3x3 reach stays inside it)
        pixels = batch.pixel_values[:1, 0]
        moved = pixels.clone()
        moved[:, :, 16 + 4 : 16 + 12, 32 + 4 : 32 + 12] = -pixels[:, :, 16 + 4 : 16 + 12, 32 + 4 : 32 + 12] + 0.5
        if kind == "fusion":
            a, b = model.patch_features(pixels), model.patch_features(moved)
        else:
            a, b = model.stem(pixels), model.stem(moved)
            proj = model.image_tower.embeddings.patch_embeddings.projection
            a, b = proj(a), proj(b)
        changed = (a - b).abs().amax(dim=(0, 1)) > 0  # [4, 4] grid
    assert changed.nonzero().tolist() == [[1, 2]]


def test_a_student_of_a_stem_teacher_gets_the_same_stem(tokenizer, tiny_size):
    from workbench.methods.dual_student import student_size

    teacher = create_model("fusion", len(tokenizer), 3, **dict(tiny_size, patch_size=16, conv_stem=[4, 8]))
    size = student_size(teacher)
    assert size["conv_stem"] == [4, 8]
    student = create_model("dual", len(tokenizer), 3, **size)
    assert [type(m).__name__ for m in student.stem.convs] == [type(m).__name__ for m in teacher.stem.convs]
    # conv features plus the pooled colours: 8 + 3 channels at a quarter of the resolution
    assert (
        student.stem(torch.zeros(1, 3, 64, 64)).shape
        == teacher.stem(torch.zeros(1, 3, 64, 64)).shape
        == (1, 11, 16, 16)
    )
    plain = create_model("fusion", len(tokenizer), 3, **tiny_size)
    assert plain.stem is None and "conv_stem" not in student_size(plain)
    assert "conv_stem" not in plain.config.to_dict()  # a stem-less config is a plain ViLT config


def test_centring_a_stem_model_centres_what_the_projection_sees(tokenizer, tiny_size):
    batch, data = _batch(tokenizer, n=8)
    model = create_model("fusion", len(tokenizer), len(data.labels), **dict(tiny_size, patch_size=16, conv_stem=[4]))
    pixels = batch.pixel_values[:, 0]
    model.centre_patch_embedding(pixels)
    with torch.no_grad():
        assert model.patch_features(pixels).mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_the_stem_passes_the_pooled_colours_beside_its_conv_features():
    from workbench.models.stem import ConvStem

    stem = ConvStem([4, 8])
    pixels = torch.rand(2, 3, 16, 16)
    out = stem(pixels)
    assert out.shape == (2, 8 + 3, 4, 4) and stem.out_channels == 11
    torch.testing.assert_close(out[:, 8:], pixels.unflatten(2, (4, 4)).unflatten(4, (4, 4)).mean(dim=(3, 5)))
    assert (out[:, :8] >= 0).all()  # the conv features are max-pooled ReLUs
