"""workbench.explain: maps land on the grid, every method's shape and normalisation, faithfulness
curves, agreement metrics against hand-computed values, error analysis, figures and the CLI."""

import csv
import math
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workbench.data import Collator, load_dataset
from workbench.data.collate import image_to_tensor
from workbench.data.shapes import VQA_ANSWERS, Obj, Scene, render
from workbench.explain import (
    METHODS,
    attention_rollout,
    auc,
    cross_attention,
    deletion_curve,
    encode,
    explain,
    image_maps,
    insertion_curve,
    integrated_gradients,
    kl_divergence,
    map_agreement,
    mask_patches,
    patch_index,
    patch_words,
    question_map,
    relevancy,
    rollout,
    spearman,
    word_map,
)
from workbench.explain.agreement import agreement_over_split, rankdata
from workbench.explain.grid import cell_of, patch_offset, to_grid
from workbench.explain.relevancy_maps import relevancy_matrix
from workbench.models import create_model
from workbench.models.dual import DualOutput
from workbench.models.fusion import FusionOutput

QUESTION = "what colour is the circle?"
OBJECT_CELL = (1, 2)  # not on the diagonal: swapping rows and columns moves it to (2, 1)


def _scene_image():
    return render(Scene(objects=[Obj("circle", "red", "large", *OBJECT_CELL)]))


@pytest.fixture(scope="module")
def models(tokenizer):
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
    return {
        "fusion": create_model("fusion", len(tokenizer), len(VQA_ANSWERS), **size).eval(),
        "dual": create_model("dual", len(tokenizer), len(VQA_ANSWERS), **size).eval(),
    }


@pytest.fixture(scope="module")
def batch(models, tokenizer):
    return encode(models["fusion"], tokenizer, _scene_image(), QUESTION)


# ----------------------------------------------------------------------------------------------
# grid placement


def test_patch_index_is_row_major():
    grid = (4, 4)
    assert patch_index(*OBJECT_CELL, grid) == 6
    assert cell_of(6, grid) == OBJECT_CELL
    assert cell_of(patch_index(3, 1, (4, 5)), (4, 5)) == (3, 1)
    values = torch.arange(1 + 16)  # [CLS] then patches
    g = to_grid(values, grid, offset=1)
    assert g[OBJECT_CELL].item() == 1 + 6 and g[0, 0].item() == 1 and g[3, 3].item() == 16


def _peaked_qk(n_tokens: int, key: int, head_dim: int = 4, heads: int = 2):
    """q, k [1, heads, n, head_dim] whose softmax(q k^T) puts all mass on token `key`."""
    q = torch.ones(1, heads, n_tokens, head_dim)
    k = torch.zeros(1, heads, n_tokens, head_dim)
    k[:, :, key] = 50.0
    return q, k


def test_teacher_attention_lands_on_the_object_cell(models, batch, monkeypatch):
    """A hand-made attention (all text queries on the key of the object's patch) read back through
    `cross_attention` peaks at the object's cell: fails if rows/cols were swapped or the text /
    image [CLS] offset were wrong."""
    model = models["fusion"]
    text_len = batch.input_ids.shape[1]
    grid = (4, 4)
    key = patch_offset(model, text_len) + patch_index(*OBJECT_CELL, grid)
    assert key == text_len + 1 + 6
    q, k = _peaked_qk(text_len + 1 + 16, key)  # text queries (all ones) -> the object's patch key
    k[:, :, 3] = 50.0  # image-to-text: text token 3 is the only text key that answers ...
    q[:, :, text_len:] = 0.0  # ... and only the object's patch query asks: others are uniform over words
    q[:, :, key] = 1.0

    def fake_forward(input_ids, attention_mask, pixel_values, output_attentions=False, qk_layers=()):
        return FusionOutput(
            logits=torch.zeros(1, len(VQA_ANSWERS)),
            qk=[{layer % 2: (q, k) for layer in qk_layers}],
            text_len=text_len,
            grid=grid,
        )

    monkeypatch.setattr(model, "forward", fake_forward)
    ca = cross_attention(model, batch)
    m = word_map(ca, 1)
    assert m.shape == grid
    assert np.unravel_index(m.argmax(), m.shape) == OBJECT_CELL and m[OBJECT_CELL] > 0.99
    assert np.argmax(patch_words(ca, *OBJECT_CELL)) == 3
    other = patch_words(ca, *OBJECT_CELL[::-1])  # (2, 1): the transposed cell is not the peaked one
    assert other.max() < 0.5


def test_student_virtual_attention_lands_on_the_object_cell(models, batch, monkeypatch):
    model = models["dual"]
    text_len = batch.input_ids.shape[1]
    grid = (4, 4)
    key = patch_offset(model, text_len) + patch_index(*OBJECT_CELL, grid)
    assert key == 1 + 6
    q_t, k_t = _peaked_qk(text_len, 0)
    q_i, k_i = _peaked_qk(1 + 16, key)

    def fake_forward(input_ids, attention_mask, pixel_values=None, image_states=None, qk_layers=()):
        return DualOutput(
            logits=torch.zeros(1, len(VQA_ANSWERS)),
            qk_text={layer % 2: (q_t, k_t) for layer in qk_layers},  # as capture_qk stores them
            qk_image=[{layer % 2: (q_i, k_i) for layer in qk_layers}],
            grid=grid,
        )

    monkeypatch.setattr(model, "forward", fake_forward)
    ca = cross_attention(model, batch)
    m = question_map(ca)
    assert np.unravel_index(m.argmax(), m.shape) == OBJECT_CELL and m[OBJECT_CELL] > 0.99


def test_rollout_reads_the_patch_part_of_the_joint_sequence(models, batch, monkeypatch):
    """Hand-made one-layer attention onto the object's patch token, through `attention_rollout`."""
    import workbench.explain.rollout_maps as rollout_module

    model = models["fusion"]
    text_len = batch.input_ids.shape[1]
    n = text_len + 1 + 16
    a = torch.zeros(1, 2, n, n)
    a[..., text_len + 1 + patch_index(*OBJECT_CELL, (4, 4))] = 1.0
    fake = {"logits": torch.zeros(1, 3), "joint": [a], "text_len": text_len, "grid": (4, 4)}
    monkeypatch.setattr(rollout_module, "self_attentions", lambda *args, **kw: fake)
    r = attention_rollout(model, batch)
    assert np.unravel_index(r["image"].argmax(), (4, 4)) == OBJECT_CELL
    assert r["image"][OBJECT_CELL] == pytest.approx(0.5)  # 0.5 attention + 0.5 residual ([CLS] itself)
    assert r["text"][0] == pytest.approx(0.5)


def test_masking_a_cell_erases_the_object_drawn_there():
    """The pixel box of cell (row, col) is where `render` draws the object of that cell."""
    pixels = image_to_tensor(_scene_image(), 64)
    erased = mask_patches(pixels, [OBJECT_CELL], 16, "white")
    assert (erased == 1.0).all()  # only white background left
    kept = mask_patches(pixels, [OBJECT_CELL[::-1]], 16, "white")
    assert torch.equal(kept, pixels)


# ----------------------------------------------------------------------------------------------
# methods on tiny models: shapes and normalisation


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_cross_attention_shapes_and_normalisation(models, batch, tokenizer, kind):
    ca = cross_attention(models[kind], batch, tokenizer)
    t = len(ca["tokens"])
    assert ca["tokens"][0] == "[CLS]" and "circle" in ca["tokens"]
    assert ca["t2i"].shape == (2, 2, t, 4, 4) and ca["i2t"].shape == (2, 2, 4, 4, t)
    np.testing.assert_allclose(ca["t2i"].sum((-1, -2)) + ca["t2i_cls"], 1.0, atol=1e-5)
    np.testing.assert_allclose(ca["i2t"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ca["i2t_cls"].sum(-1), 1.0, atol=1e-5)
    assert word_map(ca, "circle", layer=0, head=1).shape == (4, 4)
    assert patch_words(ca, 0, 3).shape == (t,)
    if kind == "fusion":
        assert ((ca["image_share"] > 0) & (ca["image_share"] < 1)).all()
    else:
        assert np.isnan(ca["image_share"]).all()


def test_teacher_cross_attention_is_the_joint_attention_renormalised(models, batch):
    """DiDE's recomputation over image keys equals the joint attention divided by its image mass."""
    model = models["fusion"]
    ca = cross_attention(model, batch)
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, output_attentions=True)
    tl = out.text_len
    for layer, a in enumerate(out.attentions[0]):
        joint = a[0, :, :tl, tl:]  # [H, T, 1 + P]
        share = joint.sum(-1)
        renorm = joint / share[..., None]
        np.testing.assert_allclose(to_grid(renorm, (4, 4), offset=1).numpy(), ca["t2i"][layer], atol=1e-5)
        np.testing.assert_allclose(share.numpy(), ca["image_share"][layer], atol=1e-5)


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(5).expand(3, 5, 5)  # 3 heads
    np.testing.assert_allclose(rollout([eye, eye, eye]).numpy(), np.eye(5), atol=1e-7)
    np.testing.assert_allclose(rollout([eye], residual=False).numpy(), np.eye(5), atol=1e-7)


def test_rollout_matches_hand_computation():
    a1 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    h1 = 0.5 * a1 + 0.5 * torch.eye(2)  # rows already sum to 1
    h2 = 0.5 * a2 + 0.5 * torch.eye(2)
    np.testing.assert_allclose(rollout([a1, a2], heads=False).numpy(), (h2 @ h1).numpy(), atol=1e-7)


def test_relevancy_matrix_matches_hand_computation():
    a = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])  # one head
    g = torch.tensor([[[2.0, -1.0], [1.0, 1.0]]])
    a_bar = torch.tensor([[0.5, 0.0], [0.5, 0.5]])  # (g * a).clamp(min=0)
    expected = torch.eye(2) + a_bar
    np.testing.assert_allclose(relevancy_matrix([a], [g]).numpy(), expected.numpy(), atol=1e-7)
    # second layer: R += A_bar @ R
    np.testing.assert_allclose(
        relevancy_matrix([a, a], [g, g]).numpy(), (expected + a_bar @ expected).numpy(), atol=1e-6
    )


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_rollout_and_relevancy_maps(models, batch, tokenizer, kind):
    r = attention_rollout(models[kind], batch, tokenizer)
    t = len(r["tokens"])
    assert r["image"].shape == (4, 4) and r["text"].shape == (t,)
    assert (r["image"] >= 0).all() and np.isfinite(r["image"]).all()
    total = r["image"].sum() + r["image_cls"] + r["text"].sum()
    assert total == pytest.approx(1.0 if kind == "fusion" else 2.0, abs=1e-4)  # one row, or one per tower
    rel = relevancy(models[kind], batch, tokenizer=tokenizer)
    assert rel["image"].shape == (4, 4) and rel["text"].shape == (t,)
    assert np.isfinite(rel["image"]).all() and (rel["image"] >= 0).all()
    assert rel["text"][0] >= 1.0  # the [CLS] row starts from the identity
    with torch.no_grad():
        logits = models[kind](batch.input_ids, batch.attention_mask, batch.pixel_values).logits
    assert rel["target"] == int(logits.argmax())
    assert relevancy(models[kind], batch, target=3)["target"] == 3


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_integrated_gradients_completeness(models, batch, tokenizer, kind):
    ig = integrated_gradients(models[kind], batch, tokenizer=tokenizer, n_steps=32, internal_batch_size=16)
    assert ig["image"].shape == (4, 4) and ig["text"].shape == (len(ig["tokens"]),)
    assert np.isfinite(ig["image"]).all() and np.isfinite(ig["text"]).all()
    assert ig["text"][0] == 0 and ig["text"][-1] == 0  # [CLS] and [SEP] equal the baseline
    total = ig["image"].sum() + ig["text"].sum()
    diff = ig["f_input"] - ig["f_baseline"]
    assert total == pytest.approx(diff, abs=0.02 * abs(diff) + 1e-3)
    assert abs(ig["delta"]) <= 0.02 * abs(diff) + 1e-3


@pytest.mark.parametrize("kind", ["fusion", "dual"])
def test_integrated_gradients_ends_and_delta_are_captums(models, batch, tokenizer, kind):
    """The target, f(input), f(baseline) come from one batched pass of input and baseline, and the delta from
    them: the same numbers as separate passes and Captum's own `return_convergence_delta`."""
    from captum.attr import LayerIntegratedGradients

    from workbench.explain.attribution import baseline_ids, embedding_layers
    from workbench.explain.inputs import baseline_image

    model = models[kind]
    ig = integrated_gradients(model, batch, tokenizer=tokenizer, n_steps=8)

    def forward(ids, pixels, mask):
        return model(ids, mask, pixels).logits.float()

    ids, mask, pixels = batch.input_ids[:1], batch.attention_mask[:1], batch.pixel_values[:1]
    base = (baseline_ids(ids, mask, tokenizer.pad_token_id), baseline_image(pixels, "mean"))
    with torch.no_grad():
        f_in, f_base = forward(ids, pixels, mask)[0], forward(*base, mask)[0]
    assert ig["target"] == int(f_in.argmax())
    assert ig["f_input"] == pytest.approx(float(f_in[ig["target"]]), abs=1e-5)
    assert ig["f_baseline"] == pytest.approx(float(f_base[ig["target"]]), abs=1e-5)
    lig = LayerIntegratedGradients(forward, list(embedding_layers(model)))
    _, delta = lig.attribute((ids, pixels), baselines=base, additional_forward_args=(mask,), target=ig["target"],
                             n_steps=8, return_convergence_delta=True)  # fmt: skip
    assert ig["delta"] == pytest.approx(float(delta[0]), abs=1e-5)
    assert integrated_gradients(model, batch, target=3, tokenizer=tokenizer, n_steps=4)["target"] == 3


def test_explain_and_image_maps_every_method(models, batch, tokenizer):
    for kind, model in models.items():
        res = explain(model, batch, tokenizer, ig_steps=4)
        assert set(res) == set(METHODS)
        for m in METHODS:
            assert res[m]["image"].shape == (4, 4), (kind, m)
            maps = image_maps(model, batch, m, ig_steps=4)
            assert maps.shape == (1, 4, 4)
            np.testing.assert_allclose(maps[0], res[m]["image"], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# faithfulness


class OnePatchModel(torch.nn.Module):
    """Answers 0 with confidence when the patch at OBJECT_CELL is dark, else answers 1."""

    patch_size = 16

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask, pixel_values):
        px = pixel_values[:, 0] if pixel_values.dim() == 5 else pixel_values
        r, c = OBJECT_CELL
        darkness = 1 - px[:, :, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16].mean(dim=(1, 2, 3))
        z = 20 * (darkness - 0.1)
        return SimpleNamespace(logits=torch.stack([z, -z], -1))


def test_deletion_curve_drops_when_the_only_relevant_patch_goes_first(batch):
    model = OnePatchModel()
    good = np.zeros((4, 4))
    good[OBJECT_CELL] = 1.0
    curve = deletion_curve(model, batch, good, baseline="white", random_orders=4, steps="patch")
    assert curve["target"] == 0
    assert curve["scores"][0] > 0.9 and (curve["scores"][1:] < 0.1).all()  # gone at the first step
    assert curve["auc"] < curve["random_auc"]
    assert len(curve["fractions"]) == 17 and curve["fractions"][-1] == 1.0
    bad = -good  # the relevant patch ranked last
    late = deletion_curve(model, batch, bad, baseline="white", steps="patch")
    assert (late["scores"][:-1] > 0.9).all() and late["scores"][-1] < 0.1
    assert late["auc"] > curve["auc"]
    ins = insertion_curve(model, batch, good, baseline="white", target=0)
    assert ins["scores"][0] < 0.1 and (ins["scores"][1:] > 0.9).all()


def test_auc_is_the_trapezoid_area():
    assert auc([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert auc([1.0, 0.0]) == pytest.approx(0.5)
    assert auc([0.0, 1.0, 0.0], [0.0, 0.5, 1.0]) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# agreement


def test_kl_against_hand_computed_value():
    p, q = np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # = 0.5 ln(4/3)
    assert kl_divergence(p, q) == pytest.approx(expected, abs=1e-6)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence([1.0, 1.0], [2.0, 6.0]) == pytest.approx(expected, abs=1e-6)  # normalised first


def test_spearman_against_hand_computed_values():
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    np.testing.assert_allclose(rankdata([1, 2, 2, 3]), [1, 2.5, 2.5, 4])
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    a = map_agreement(np.eye(2), np.eye(2))
    assert a["kl"] == pytest.approx(0.0, abs=1e-9) and a["spearman"] == pytest.approx(1.0)


def test_agreement_over_split_by_question_type(models, tokenizer):
    data = load_dataset("shapes-vqa", "val", 12)
    collate = Collator.for_model(models["fusion"], tokenizer)
    for method in ("attention", "relevancy"):
        out = agreement_over_split(models["fusion"], models["dual"], data, collate, method=method, batch_size=8)
        assert len(out["per_example"]) == 12 and out["overall"]["n"] == 12
        assert set(out["per_type"]) == set(data.qtypes)
        assert sum(v["n"] for v in out["per_type"].values()) == 12
        assert all(r["kl"] >= 0 and -1 <= r["spearman"] <= 1 for r in out["per_example"])
    same = agreement_over_split(models["fusion"], models["fusion"], data, collate, limit=4)
    assert same["overall"]["kl"] == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------------------------
# error analysis


def test_compare_models_disagreements_and_export(models, tokenizer, tmp_path):
    from workbench.evaluate import accuracy_by_type, compare_models, confusion_matrix, disagreements, export_rows

    data = load_dataset("shapes-vqa", "val", 12)
    collate = Collator.for_model(models["fusion"], tokenizer)
    rows = compare_models(models["fusion"], models["dual"], data, collate, batch_size=5)
    assert len(rows) == 12 and [r["index"] for r in rows] == list(range(12))
    assert all(r["gold"] == VQA_ANSWERS[data[i].label] for i, r in enumerate(rows))
    assert all(0 < r["teacher_confidence"] <= 1 and r["kl"] >= 0 for r in rows)
    diff = disagreements(rows)
    assert diff and all(r["teacher_answer"] != r["student_answer"] for r in diff)
    assert len(diff) == sum(not r["agree"] for r in rows)
    conf = [r["student_confidence"] for r in diff]
    assert conf == sorted(conf, reverse=True)
    by_kl = disagreements(rows, sort_by="kl", descending=False)
    assert [r["kl"] for r in by_kl] == sorted(r["kl"] for r in by_kl)
    qtype = rows[0]["qtype"]
    assert all(r["qtype"] == qtype for r in disagreements(rows, qtype=qtype))
    acc = accuracy_by_type(rows)
    assert acc["overall"]["n"] == 12 and set(acc["per_type"]) == set(data.qtypes)
    m = confusion_matrix(rows, list(VQA_ANSWERS), "teacher")
    assert m.shape == (len(VQA_ANSWERS),) * 2 and m.sum() == 12
    assert m.trace() == sum(r["teacher_correct"] for r in rows)

    path = export_rows(diff, tmp_path / "disagree.csv")
    with path.open() as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(diff) and back[0]["text"] == diff[0]["text"]
    assert float(back[0]["student_confidence"]) == pytest.approx(diff[0]["student_confidence"])
    import json

    assert json.loads(export_rows(rows, tmp_path / "rows.json").read_text())[3]["text"] == rows[3]["text"]


# ----------------------------------------------------------------------------------------------
# figures and the CLI


def test_explanation_figures_build(models, batch, tokenizer):
    from workbench import viz

    image = _scene_image()
    ca = cross_attention(models["fusion"], batch, tokenizer)
    maps = {"teacher": word_map(ca, "circle"), "student": np.full((4, 4), 0.5)}
    fig = viz.patch_maps_side_by_side(maps, title="t", image=image)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 2 and len([t for t in fig.data if t.type == "image"]) == 2
    assert {(h.zmin, h.zmax) for h in heat} == {(min(m.min() for m in maps.values()), 0.5)}
    assert heat[0].x0 == 8 and heat[0].dx == 16  # cell centres in pixels
    signed = viz.patch_maps_side_by_side({"a": np.array([[-1.0, 0.5]])}, symmetric=True)
    assert (signed.data[0].zmin, signed.data[0].zmax) == (-1.0, 1.0)
    assert viz.patch_map_overlay(image, maps["teacher"]).data[1].opacity == 0.6
    strip = viz.word_strip(ca["tokens"], {"teacher": patch_words(ca, 1, 2), "student": patch_words(ca, 0, 0)})
    assert list(strip.layout.xaxis.ticktext) == ca["tokens"]
    grid = viz.head_grid(ca["t2i"][:, :, 1], image=image)
    assert len([t for t in grid.data if t.type == "heatmap"]) == 4
    curve = deletion_curve(models["fusion"], batch, maps["teacher"], random_orders=1)
    fig = viz.perturbation_curves({"attention": curve})
    assert len(fig.data) == 2 and "AUC" in fig.data[0].name
    cm = viz.confusion_matrix_figure(np.eye(3), ["a", "b", "c"], normalise=True)
    assert cm.data[0].z[0][0] == 1.0
    bar = viz.accuracy_by_type_bar({"x": {"teacher": 1.0, "student": 0.5, "n": 2}})
    assert len(bar.data) == 2
    with pytest.raises(ValueError):
        viz.word_strip(["a"], {"t": np.zeros(2)})


def test_explain_cli_writes_html(models, tokenizer, tmp_path):
    from workbench.cli import main
    from workbench.models.io import save_checkpoint

    meta = {"task": "vqa", "labels": list(VQA_ANSWERS), "dataset": "shapes-vqa"}
    save_checkpoint(models["fusion"], tokenizer, tmp_path / "teacher", meta)
    save_checkpoint(models["dual"], tokenizer, tmp_path / "student", meta)
    image = tmp_path / "scene.png"
    _scene_image().save(image)
    out = tmp_path / "out"
    argv = ["explain", str(tmp_path / "teacher"), str(image), QUESTION, "--student", str(tmp_path / "student")]
    assert main([*argv, "--out", str(out), "--ig-steps", "4", "--word", "circle"]) == 0
    assert (out / "explain.html").exists() and (out / "plotly.min.js").exists()
    for name in ("attention", "rollout", "relevancy", "ig", "word", "heads-teacher", "deletion-student"):
        assert (out / f"{name}.html").exists(), name
    import json

    summary = json.loads((out / "explain.json").read_text())
    assert set(summary["models"]) == {"teacher", "student"} and summary["word"] == "circle"
    assert set(summary["agreement"]) == set(METHODS)
    assert np.asarray(summary["models"]["student"]["maps"]["relevancy"]).shape == (4, 4)
    teacher = summary["models"]["teacher"]
    assert teacher["curve_steps"] == 10 and set(teacher["seconds"]) == set(METHODS)  # 10% steps; time per method
    assert all(t["map"] >= 0 and t["curves"] > 0 for t in teacher["seconds"].values())


def test_student_towers_of_different_depths_pair_their_last_layers(tokenizer, batch):
    torch.manual_seed(0)
    model = create_model("dual", len(tokenizer), 3, hidden_size=32, num_layers=2, num_heads=2, image_layers=3).eval()
    ca = cross_attention(model, batch)
    assert ca["t2i"].shape[:2] == (2, 2)
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.pixel_values, qk_layers=(-1,))
    from workbench.losses import student_cross_scores

    t2i, _ = student_cross_scores(out.qk_text[1], out.qk_image[0][2])  # the towers' last layers
    np.testing.assert_allclose(ca["t2i"][-1], to_grid(t2i.softmax(-1)[0], (4, 4), offset=1).numpy(), atol=1e-6)


def test_dual_student_ig_runs_eager_attention_on_cpu_and_restores_sdpa(models, batch, tokenizer, monkeypatch):
    """On a CPU the student's IG passes run eager attention (its backward is faster there than SDPA's); the
    towers are back on their own setting afterwards, and the attributions are SDPA's up to float rounding."""
    from workbench.explain import attribution

    dual = models["dual"]
    assert dual.attn_implementation == "sdpa"
    seen = []
    original = attribution.LayerIntegratedGradients.attribute

    def spy(self, *args, **kwargs):
        seen.append(dual.text_config._attn_implementation)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(attribution.LayerIntegratedGradients, "attribute", spy)
    eager = integrated_gradients(dual, batch, tokenizer=tokenizer, n_steps=8)
    assert seen == ["eager"] and dual.attn_implementation == "sdpa"
    monkeypatch.setattr(attribution, "_fastest_backward_attention", lambda model, device: nullcontext())
    fused = integrated_gradients(dual, batch, tokenizer=tokenizer, n_steps=8)
    assert seen == ["eager", "sdpa"]
    np.testing.assert_allclose(eager["image"], fused["image"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(eager["text"], fused["text"], rtol=1e-4, atol=1e-6)
