"""Student initialisation from local pretrained folders (`workbench.models.init_from`): the "vilt" text tower,
the ViLT / ViT / BERT transplants (exact tensors, exact forwards), the copied / fresh report, the clear errors,
and `load_checkpoint(for_init=True)` on a ViltForMaskedLM folder. Every folder is built here from a tiny config."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, ViltConfig, ViltForMaskedLM, ViltModel, ViTConfig, ViTModel

from workbench.errors import CheckpointError
from workbench.models import create_model, for_task
from workbench.models.init_from import init_student, sized_for_init, text_arch_for
from workbench.models.io import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

D, HEADS, LAYERS, TEXT_LEN = 32, 2, 2, 40
STUDENT = {"hidden_size": D, "num_heads": HEADS, "num_layers": LAYERS, "max_text_len": TEXT_LEN}
FRESH = ["classifier.0.bias", "classifier.0.weight", "classifier.1.bias", "classifier.1.weight", "classifier.3.bias",
         "classifier.3.weight", "fusion.0.bias", "fusion.0.weight", "fusion.1.bias", "fusion.1.weight",
         "fusion.3.bias", "fusion.3.weight", "image_proj.weight", "logit_scale", "text_proj.weight"]  # fmt: skip


def _jitter(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """HF starts biases, positions and the [CLS] at zero or one: give every tensor its own value."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def vilt_config(vocab: int, **kw) -> ViltConfig:
    base = dict(vocab_size=vocab, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                intermediate_size=4 * D, max_position_embeddings=TEXT_LEN, image_size=64, patch_size=16,
                max_image_length=-1)  # fmt: skip
    return ViltConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer) -> dict:
    """Tiny pretrained folders: ViltForMaskedLM (with the tokenizer), a bare ViltModel, ViTModel, BertModel."""
    root = tmp_path_factory.mktemp("pretrained")
    mlm = _jitter(ViltForMaskedLM(vilt_config(len(tokenizer))), 0)
    mlm.save_pretrained(root / "mlm")
    tokenizer.save_pretrained(root / "mlm")
    _jitter(ViltModel(vilt_config(len(tokenizer))), 1).save_pretrained(root / "vilt-bare")
    vit = ViTConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=4 * D,
                    image_size=64, patch_size=16, qkv_bias=True)  # fmt: skip
    _jitter(ViTModel(vit), 2).save_pretrained(root / "vit")
    bert = BertConfig(vocab_size=len(tokenizer), hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=4 * D, max_position_embeddings=512)  # fmt: skip
    _jitter(BertModel(bert, add_pooling_layer=False), 3).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return {"mlm": root / "mlm", "bare": root / "vilt-bare", "vit": root / "vit", "bert": root / "bert", "root": root}


def _student(tokenizer, **size):
    torch.manual_seed(5)
    return create_model("dual", len(tokenizer), 3, **{**STUDENT, **size}).eval()


def _text_batch(tokenizer):
    enc = tokenizer(["is the red circle left of the square", "what colour"], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _additive(mask: torch.Tensor) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


@torch.no_grad()
def vilt_text_only(vilt: ViltModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ViLT's transformer on the text tokens alone, as the official DiDE text tower: text embeddings + the text
    modality type, the blocks (padded keys masked), the final LayerNorm."""
    emb = vilt.embeddings
    x = emb.text_embeddings(input_ids=ids) + emb.token_type_embeddings(torch.zeros_like(ids))
    for layer in vilt.encoder.layer:
        x = layer(x, _additive(mask))[0]
    return vilt.layernorm(x)


@torch.no_grad()
def vilt_image_only(vilt: ViltModel, pixels: torch.Tensor) -> torch.Tensor:
    """ViLT's transformer on one square image alone, as the official DiDE image tower (image type 1)."""
    emb = vilt.embeddings
    patches = emb.patch_embeddings.projection(pixels).flatten(2).transpose(1, 2) + emb.position_embeddings[:, 1:]
    cls = emb.cls_token + emb.position_embeddings[:, :1]
    x = torch.cat([cls.expand(len(pixels), -1, -1), patches], dim=1)
    x = x + emb.token_type_embeddings(torch.ones(x.shape[:2], dtype=torch.long))
    for layer in vilt.encoder.layer:
        x = layer(x)[0]
    return vilt.layernorm(x)


# ----------------------------------------------------------------------------------------------
# the "vilt" text tower


def test_vilt_text_tower_keeps_qk_capture_encode_text_and_saves_its_variant(tokenizer, tmp_path):
    student = _student(tokenizer, text_arch="vilt")
    assert student.text_arch == "vilt" and len(student.text_tower.layers) == LAYERS
    ids, mask = _text_batch(tokenizer)
    out = student(ids, mask, torch.rand(2, 3, 64, 64), qk_layers=tuple(range(LAYERS)))
    assert out.text_states.shape == (2, ids.shape[1], D)
    assert sorted(out.qk_text) == list(range(LAYERS))
    assert out.qk_text[0][0].shape == (2, HEADS, ids.shape[1], D // HEADS)
    save_checkpoint(student, tokenizer, tmp_path / "s", {"task": "vqa", "labels": ["a", "b", "c"]})
    back = load_checkpoint(tmp_path / "s").model
    assert back.text_arch == "vilt"
    with torch.no_grad():
        assert torch.allclose(back.encode_text(ids, mask), student.encode_text(ids, mask), atol=1e-6)
    assert _student(tokenizer).text_arch == "bert"  # the default, and absent from the config as before
    assert "text_arch" not in _student(tokenizer).text_config.to_dict()


def test_vilt_text_tower_eager_and_fused_attention_agree_and_eager_returns_probabilities(tokenizer):
    student = _student(tokenizer, text_arch="vilt")
    ids, mask = _text_batch(tokenizer)
    with torch.no_grad():
        fused = student.encode_text(ids, mask)
        student.attn_implementation = "eager"
        eager = student.text_tower(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert student.attn_implementation == "eager"
    assert torch.allclose(fused, eager.last_hidden_state, atol=1e-5)
    assert len(eager.attentions) == LAYERS and eager.attentions[0].shape == (2, HEADS, ids.shape[1], ids.shape[1])
    assert eager.attentions[0][1, :, :, mask[1] == 0].abs().max() == 0  # padded keys get no attention


# ----------------------------------------------------------------------------------------------
# --student-init: both towers from one ViLT folder


def test_student_init_copies_vilt_into_both_towers_and_runs_as_vilt(folders, tokenizer):
    student = _student(tokenizer, text_arch="vilt")
    report = init_student(student, student=folders["mlm"], tokenizer=tokenizer)
    vilt = ViltForMaskedLM.from_pretrained(folders["mlm"]).vilt.eval()
    for i, layer in enumerate(vilt.encoder.layer):  # q and k at every layer of both towers equal ViLT's
        for name, theirs in (("q_proj", layer.attention.attention.query), ("k_proj", layer.attention.attention.key)):
            for tower in (student.text_tower, student.image_tower):
                ours = getattr(tower.layers[i].attention, name)
                assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    ids, mask = _text_batch(tokenizer)
    with torch.no_grad():
        text = student.encode_text(ids, mask)
        pixels = torch.rand(2, 3, 64, 64)
        image = student.encode_image(pixels)
    real = mask.bool()
    assert (text - vilt_text_only(vilt, ids, mask))[real].abs().max() < 1e-5
    assert (image - vilt_image_only(vilt, pixels)).abs().max() < 1e-5
    assert report.fresh == FRESH
    assert len(report.copied) == 2 * 16 * LAYERS + 2 * 2 + 4 + 5  # blocks, final norms, image and text embeddings
    assert "modality type, folded in" in report.copied["text_tower.embeddings.LayerNorm.bias"]
    assert "modality type, folded in" in report.copied["image_tower.embeddings.position_embeddings"]
    assert any("mlm_score" in k for k in report.unused) and any("pooler" in k for k in report.unused)
    assert student.pretrained_patches  # the run's data-dependent centring then keeps the copied bias
    bias = student.image_tower.embeddings.patch_embeddings.projection.bias.clone()
    student.centre_patch_embedding(torch.rand(4, 3, 64, 64))
    assert torch.equal(bias, student.image_tower.embeddings.patch_embeddings.projection.bias)


def test_a_bare_vilt_model_folder_and_a_shallower_text_tower(folders, tokenizer):
    student = _student(tokenizer, text_arch="vilt", text_layers=1)
    report = init_student(student, student=folders["bare"])
    vilt = ViltModel.from_pretrained(folders["bare"])
    assert torch.equal(
        student.text_tower.layers[0].attention.q_proj.weight, vilt.encoder.layer[0].attention.attention.query.weight
    )
    assert any("the first 1 of the 2 layers" in n for n in report.notes)
    assert any("vocabulary not checked" in n for n in report.notes)  # the bare folder has no tokenizer


# ----------------------------------------------------------------------------------------------
# --image-init and --text-init


def test_image_init_from_vit_gives_vits_forward_and_leaves_the_text_tower(folders, tokenizer):
    student = _student(tokenizer)
    text_before = student.text_tower.state_dict()["embeddings.word_embeddings.weight"].clone()
    report = init_student(student, image=folders["vit"])
    vit = ViTModel.from_pretrained(folders["vit"]).eval()
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert (student.encode_image(pixels) - vit(pixels).last_hidden_state).abs().max() < 1e-5
    assert torch.equal(student.text_tower.embeddings.word_embeddings.weight, text_before)
    assert all(k.startswith("image_tower.") for k in report.copied)
    assert any(k.endswith("pooler.dense.weight") for k in report.unused)


def test_image_init_from_vilt_takes_its_vision_part(folders, tokenizer):
    student = _student(tokenizer)
    report = init_student(student, image=folders["mlm"])
    assert all(k.startswith("image_tower.") for k in report.copied) and len(report.copied) == 16 * LAYERS + 2 + 4
    vilt = ViltForMaskedLM.from_pretrained(folders["mlm"]).vilt.eval()
    pixels = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert (student.encode_image(pixels) - vilt_image_only(vilt, pixels)).abs().max() < 1e-5


def test_text_init_from_bert_gives_berts_forward(folders, tokenizer):
    student = _student(tokenizer)
    report = init_student(student, text=folders["bert"], tokenizer=tokenizer)
    bert = BertModel.from_pretrained(folders["bert"], add_pooling_layer=False).eval()
    ids, mask = _text_batch(tokenizer)
    with torch.no_grad():
        ours, theirs = student.encode_text(ids, mask), bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - theirs)[mask.bool()].abs().max() < 1e-5
    assert all(k.startswith("text_tower.") for k in report.copied)
    assert any(f"the first {TEXT_LEN} of 512 rows" in n for n in report.notes)  # BERT's longer position table


def test_text_init_from_vilt_and_student_init_with_a_tower_of_its_own(folders, tokenizer):
    student = _student(tokenizer, text_arch="vilt")
    report = init_student(student, student=folders["mlm"], image=folders["vit"], tokenizer=tokenizer)
    vit = ViTModel.from_pretrained(folders["vit"])
    assert torch.equal(student.image_tower.layers[1].attention.k_proj.weight, vit.layers[1].attention.k_proj.weight)
    assert report.copied["text_tower.layers.0.attention.q_proj.weight"].startswith(str(folders["mlm"]))
    assert report.copied["image_tower.layers.0.attention.q_proj.weight"].startswith(str(folders["vit"]))
    bert_text = _student(tokenizer)  # the text tower's own BERT folder: a "bert" tower, the ViLT gives the image one
    report = init_student(bert_text, student=folders["mlm"], text=folders["bert"], tokenizer=tokenizer)
    assert report.copied["text_tower.encoder.layer.0.attention.self.query.weight"].startswith(str(folders["bert"]))
    assert report.copied["image_tower.layers.0.attention.q_proj.weight"].startswith(str(folders["mlm"]))
    assert any("embeddings.text_embeddings.word_embeddings.weight" in k for k in report.unused)


def test_student_init_from_a_vit_folder_is_the_official_fallback(folders, tokenizer):
    """Without a ViLT checkpoint the official towers start from ImageNet ViT blocks, the text embeddings fresh."""
    assert sized_for_init({}, student=str(folders["vit"])) == {"text_arch": "vilt"}
    student = _student(tokenizer, text_arch="vilt")
    words = student.text_tower.embeddings.word_embeddings.weight.clone()
    report = init_student(student, student=folders["vit"], tokenizer=tokenizer)
    vit = ViTModel.from_pretrained(folders["vit"])
    for tower in (student.text_tower, student.image_tower):
        assert torch.equal(tower.layers[1].mlp.fc1.weight, vit.layers[1].mlp.fc1.weight)
        assert torch.equal(tower.layernorm.bias, vit.layernorm.bias)
    assert torch.equal(student.text_tower.embeddings.word_embeddings.weight, words)
    assert "text_tower.embeddings.word_embeddings.weight" in report.fresh


# ----------------------------------------------------------------------------------------------
# the folders decide the text tower; clear errors


def test_sized_for_init_picks_the_text_tower_and_positions(folders):
    assert sized_for_init({}, student=str(folders["mlm"])) == {"text_arch": "vilt", "max_text_len": TEXT_LEN}
    assert sized_for_init({"hidden_size": D}, text=str(folders["bert"])) == {"hidden_size": D}
    assert sized_for_init({}, image=str(folders["vit"])) == {}
    assert text_arch_for(str(folders["mlm"]), str(folders["bert"])) == "bert"  # the text tower's own folder wins
    with pytest.raises(CheckpointError, match="asks for text_arch 'bert'"):
        sized_for_init({"text_arch": "bert"}, student=str(folders["mlm"]))


def test_a_size_mismatch_names_the_tensor_and_both_shapes(folders, tokenizer):
    student = _student(tokenizer, image_size=32)  # 4 patches + CLS, ViT's 64 px has 16 + CLS
    with pytest.raises(CheckpointError) as e:
        init_student(student, image=folders["vit"])
    message = str(e.value)
    assert "embeddings.position_embeddings has shape [1, 17, 32]" in message
    assert "image_tower.embeddings.position_embeddings [1, 5, 32]" in message


def test_the_wrong_kind_of_folder_or_tower_is_refused(folders, tokenizer):
    with pytest.raises(CheckpointError, match="a 'bert' folder; expected a ViT folder or a ViLT folder"):
        init_student(_student(tokenizer), image=folders["bert"])
    with pytest.raises(CheckpointError, match="fits the 'vilt' text tower"):
        init_student(_student(tokenizer), text=folders["mlm"])  # a "bert" student
    with pytest.raises(CheckpointError, match="fits the 'bert' text tower"):
        init_student(_student(tokenizer, text_arch="vilt"), text=folders["bert"])
    with pytest.raises(CheckpointError, match="num_attention_heads 2"):
        init_student(_student(tokenizer, num_heads=4), student=folders["mlm"])
    with pytest.raises(CheckpointError, match="has 2 layers; the student's text_tower has 3"):
        init_student(_student(tokenizer, text_arch="vilt", text_layers=3), student=folders["mlm"])


def test_a_tokenizer_of_another_vocabulary_is_refused(folders, tokenizer):
    other = type(tokenizer)(vocab_file=str(folders["mlm"] / "vocab.txt"))
    other.add_tokens(["zebra"])
    with pytest.raises(CheckpointError, match="tokenizer differs from the student's"):
        init_student(_student(tokenizer, text_arch="vilt"), student=folders["mlm"], tokenizer=other)


def test_pickle_only_or_missing_folders_are_refused(tmp_path, tokenizer):
    (tmp_path / "config.json").write_text('{"model_type": "vit"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="pickle weights are never read"):
        init_student(_student(tokenizer), image=tmp_path)
    with pytest.raises(CheckpointError, match="no config.json"):
        init_student(_student(tokenizer), image=tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------
# --init-from a ViltForMaskedLM folder (a teacher fine-tuned from ViLT's pre-training)


def test_a_vilt_mlm_folder_loads_as_an_init_with_its_encoder_and_a_fresh_head(folders):
    with pytest.raises(CheckpointError, match="use it as --init-from"):
        load_checkpoint(folders["mlm"])  # not a teacher: it has no task head
    ck = load_checkpoint(folders["mlm"], for_init=True)
    assert ck.labels == [] and ck.meta["head"] == "ViltForMaskedLM"
    mlm = ViltForMaskedLM.from_pretrained(folders["mlm"])
    ours, theirs = ck.model.state_dict(), mlm.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if k.startswith("vilt."))
    ve = for_task(ck.model, 1, 3)
    assert ve.classifier[-1].out_features == 3
    nlvr = for_task(load_checkpoint(folders["mlm"], for_init=True).model, 2, 2)
    types = nlvr.vilt.embeddings.token_type_embeddings.weight
    assert types.shape[0] == 3 and torch.equal(types[2], types[1]) and torch.equal(types[:2], theirs[
        "vilt.embeddings.token_type_embeddings.weight"])  # fmt: skip


def test_a_bare_vilt_model_folder_loads_as_an_init_when_it_has_a_tokenizer(folders, tokenizer, tmp_path):
    import shutil

    folder = shutil.copytree(folders["bare"], tmp_path / "bare")
    tokenizer.save_pretrained(folder)
    ck = load_checkpoint(folder, for_init=True)
    vilt = ViltModel.from_pretrained(folder)
    assert torch.equal(ck.model.vilt.encoder.layer[1].output.dense.weight, vilt.encoder.layer[1].output.dense.weight)
    assert torch.equal(ck.model.vilt.pooler.dense.weight, vilt.pooler.dense.weight)
