"""MAD (workbench/methods/mad.py, its losses in workbench/losses.py): token selection, confidence weights, the
feature loss on hand-made
tensors, the confidence probe, gradients, and a tiny end-to-end run."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from transformers import BertConfig, BertModel, ViTMAEForPreTraining

from workbench.data import Collator, load_dataset
from workbench.losses import confidence_weights, select_image_tokens
from workbench.losses import token_feature_distill as feature_distill_loss
from workbench.mae import mae_config
from workbench.methods import get_method, method_names
from workbench.methods.mad import MADObjective as MADRecipe
from workbench.methods.mad_probe import example_key, fit_confidence_probe, fit_probe, fold_of, pooled_features
from workbench.models import create_model
from workbench.models.unimodal import TextTeacher, VisionTeacher

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.one_thread)


# ----------------------------------------------------------------------------------------------
# token selection


def test_selection_is_the_top_k_of_head_and_text_averaged_attention():
    # B=1, H=2, T=3, P=4. Per head and text token, attention to the 4 patches:
    att = torch.zeros(1, 2, 3, 4)
    att[0, 0, 0] = torch.tensor([0.1, 0.5, 0.1, 0.0])
    att[0, 1, 0] = torch.tensor([0.1, 0.1, 0.1, 0.4])
    att[0, 0, 1] = torch.tensor([0.3, 0.0, 0.0, 0.0])
    att[0, 1, 1] = torch.tensor([0.3, 0.0, 0.0, 0.0])
    att[0, :, 2] = torch.tensor([0.0, 0.0, 9.0, 0.0])  # a padded text token: must not count
    mask = torch.tensor([[1, 1, 0]])
    # head means: token 0 -> [.1, .3, .1, .2], token 1 -> [.3, 0, 0, 0]; over real tokens: [.2, .15, .05, .1]
    assert select_image_tokens(att, mask, 1).tolist() == [[True, False, False, False]]
    assert select_image_tokens(att, mask, 2).tolist() == [[True, True, False, False]]
    assert select_image_tokens(att, mask, 3).tolist() == [[True, True, False, True]]
    # counting the padded token would pick patch 2 first
    assert select_image_tokens(att, torch.ones(1, 3), 1).tolist() == [[False, False, True, False]]
    assert select_image_tokens(att, mask, 4).all() and select_image_tokens(att, mask, 9).all()
    assert not select_image_tokens(att, mask, 0).any()


def test_selection_ties_go_to_the_lower_patch_index():
    att = torch.full((2, 1, 2, 6), 0.1)
    att[1, 0, :, 4] = 0.5
    chosen = select_image_tokens(att, torch.ones(2, 2), 3)
    assert chosen.tolist() == [[True, True, True, False, False, False], [True, True, False, False, True, False]]


def test_selection_matches_brute_force_top_k_under_the_mask():
    torch.manual_seed(0)
    att = torch.rand(5, 3, 7, 16).softmax(-1)
    mask = (torch.rand(5, 7) > 0.4).long()
    mask[:, 0] = 1
    for k in (1, 4, 10):
        chosen = select_image_tokens(att, mask, k)
        assert (chosen.sum(1) == k).all()
        for b in range(5):
            real = mask[b].bool()
            score = att[b].mean(0)[real].mean(0)
            expected = set(score.topk(k).indices.tolist())
            assert set(chosen[b].nonzero().flatten().tolist()) == expected


# ----------------------------------------------------------------------------------------------
# confidence weights


def test_confidence_weights_are_normalised_proportional_and_gradient_free():
    p = torch.tensor([0.9, 0.1, 0.5, 0.5], requires_grad=True)
    w = confidence_weights(p)
    assert not w.requires_grad and w.grad_fn is None
    assert torch.isclose(w.sum(), torch.tensor(4.0))
    assert torch.allclose(w, torch.tensor([0.9, 0.1, 0.5, 0.5]) * 4 / 2.0)
    assert torch.equal(confidence_weights(torch.full((3,), 0.2)), torch.ones(3))  # equal confidence: uniform
    assert torch.equal(confidence_weights(torch.zeros(3)), torch.ones(3))
    # computed from a graph, still detached: no gradient flows back through the weights
    logits = torch.randn(4, 5, requires_grad=True)
    w = confidence_weights(logits.softmax(-1)[:, 0])
    assert not w.requires_grad


# ----------------------------------------------------------------------------------------------
# feature loss


def test_feature_loss_by_hand():
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], [[1.0, 1.0], [3.0, 0.0], [0.0, 0.0]]])
    t = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]], [[1.0, 1.0], [0.0, 3.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    # cosine distances: instance 0: 0 and 1 (token 2 masked); instance 1: 0 and 1
    assert torch.isclose(feature_distill_loss(s, t, mask, kind="cosine"), torch.tensor(0.5))
    # mse per token (mean over the 2 dims): instance 0: 0, (4 + 4) / 2 = 4 -> 2; instance 1: 0, (9 + 9) / 2 = 9 -> 4.5
    assert torch.isclose(feature_distill_loss(s, t, mask, kind="mse"), torch.tensor((2 + 4.5) / 2))
    # weights multiply per instance; the sum is divided by the batch size
    w = torch.tensor([1.5, 0.5])
    assert torch.isclose(feature_distill_loss(s, t, mask, w, kind="mse"), torch.tensor((1.5 * 2 + 0.5 * 4.5) / 2))
    assert torch.isclose(feature_distill_loss(s, t, mask, torch.tensor([0.0, 2.0])), torch.tensor(1.0 * 0.5))


def test_masked_tokens_contribute_nothing():
    torch.manual_seed(0)
    s, t = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]]).bool()
    noisy = s.clone()
    noisy[~mask] = 1e4 * torch.randn(int((~mask).sum()), 4)
    for kind in ("cosine", "mse"):
        assert torch.isclose(
            feature_distill_loss(s, t, mask, kind=kind), feature_distill_loss(noisy, t, mask, kind=kind)
        )
    s.requires_grad_(True)
    feature_distill_loss(s, t, mask, kind="mse").backward()
    assert (s.grad[~mask] == 0).all() and (s.grad[mask] != 0).any()
    with pytest.raises(ValueError, match="shapes differ"):
        feature_distill_loss(s, t[:, :4], mask)
    with pytest.raises(ValueError, match="unknown token feature loss"):
        feature_distill_loss(s, t, mask, kind="l1")


# ----------------------------------------------------------------------------------------------
# the probe


def test_probe_fits_separable_data_and_gives_gradient_free_confidences():
    torch.manual_seed(0)
    centres = torch.randn(3, 8) * 3
    y = torch.arange(60) % 3
    x = centres[y] + 0.3 * torch.randn(60, 8)
    probe = fit_probe(x, y, 3, steps=100)
    assert (probe(x).argmax(-1) == y).float().mean() == 1.0
    p = probe.prob_of_gold(x, y)
    assert p.shape == (60,) and not p.requires_grad and (p > 0.5).all()
    assert not any(q.requires_grad for q in probe.parameters())
    assert pooled_features(torch.ones(2, 3), torch.ones(2, 4, 5)).shape == (2, 8)


def test_fitted_pairs_get_held_out_confidences():
    """A pair the probes were fitted on is scored by the probe that did not see it (cross-fitting); any
    other pair by the probe fitted on all of them."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.arange(40) % 4  # random labels: in-sample fits, held-out cannot
    keys = [example_key(f"text {i}", torch.full((3, 2, 2), float(i))) for i in range(40)]
    probe, info = fit_confidence_probe(x, y, keys, 4, steps=300, lr=0.1, weight_decay=0.0)
    assert info["examples"] == 40 and info["train_accuracy"] > info["held_out_accuracy"]
    full = probe.full.prob_of_gold(x, y)
    held = probe.prob_of_gold(x, y, keys)
    assert held.mean() < full.mean()  # memorised in-sample, not held out
    fold = fold_of(40, 2)
    assert fold.bincount().tolist() == [20, 20]
    other = fit_probe(x[fold == 1], y[fold == 1], 4, steps=300, lr=0.1, weight_decay=0.0)  # scores fold 0
    assert torch.allclose(held[fold == 0], other.prob_of_gold(x[fold == 0], y[fold == 0]), atol=1e-6)
    unknown = [example_key("new", torch.zeros(3, 2, 2))] * 40
    assert torch.equal(probe.prob_of_gold(x, y, unknown), full)
    assert example_key("a", torch.zeros(3, 2, 2)) != example_key("a", torch.ones(3, 2, 2))


# ----------------------------------------------------------------------------------------------
# the recipe with tiny teachers


@pytest.fixture(scope="module")
def tiny_teachers(tmp_path_factory, tokenizer):
    """A tiny BERT text teacher (the workbench tokenizer, 24 wide) and a tiny MAE (8-px patches, 16 wide)."""
    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=48, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(root / "text")
    tokenizer.save_pretrained(root / "text")
    mae = mae_config(
        64, 8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        decoder_hidden_size=8, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=16,
    )  # fmt: skip
    ViTMAEForPreTraining(mae).save_pretrained(root / "mae")
    return root


def _batch(tokenizer, n=8, dataset="shapes-vqa"):
    data = load_dataset(dataset, "val", n)
    return data, Collator(tokenizer, 64)([data[i] for i in range(n)])


def _recipe(name, root, tokenizer, data, **kw):
    text, vision = TextTeacher.from_folder(root / "text"), VisionTeacher.from_folder(root / "mae")
    return MADRecipe(name, text, vision, tokenizer, get_method(name).config(**kw), probe_data=data)


@pytest.mark.parametrize("name", [n for n in method_names(student="fusion") if n.startswith("mad")])
def test_gradients_reach_the_student_and_projections_never_the_teachers(name, tiny_teachers, tokenizer):
    data, batch = _batch(tokenizer)
    student = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    recipe = _recipe(name, tiny_teachers, tokenizer, data)
    recipe.attach(student)
    if recipe.config.confidence:
        info = recipe.fit_confidence_probe(data, 64, (4, 4))
        assert info["examples"] == 8
    loss, logs = recipe.loss(student, batch)
    assert torch.isfinite(loss) and logs["f_text"] > 0 and logs["f_image"] > 0
    assert ("conf" in logs) == recipe.config.confidence
    loss.backward()
    for teacher in (recipe.text, recipe.vision):
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    for proj in (student.mad_projections.text, student.mad_projections.image):
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    patch = student.vilt.embeddings.patch_embeddings.projection.weight.grad
    assert patch is not None and patch.abs().sum() > 0
    recipe.detach(student)
    assert not any(k.startswith("mad_projections") for k in student.state_dict())


def test_image_cache_gives_the_teachers_features_and_runs_it_once_per_image(tiny_teachers, tokenizer):
    data, batch = _batch(tokenizer)
    student = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    plain = _recipe("mad-naive", tiny_teachers, tokenizer, data)
    cached = _recipe("mad-naive", tiny_teachers, tokenizer, data)
    cached.image_cache_size = 6  # room for 6 of the batch's 8 images
    seen = []
    cached.vision.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].shape[0]))
    pixels = batch.pixel_values[:, 0]
    want, want_mask = plain.vision(pixels, (4, 4))
    for _ in range(2):
        got, mask = cached.image_features(pixels, (4, 4))
        torch.testing.assert_close(got, want)
        assert torch.equal(mask, want_mask)
    assert seen == [8, 2] and len(cached.image_cache) == 6  # full: the 2 it could not keep are computed again
    shuffled = torch.flip(pixels, [0])  # same images, another order: all from the cache but those 2
    torch.testing.assert_close(cached.image_features(shuffled, (4, 4))[0], torch.flip(want, [0]))
    assert seen == [8, 2, 2]
    assert cached.image_features(pixels, (2, 2))[0].shape == (8, 4, want.shape[-1])  # the grid is in the key
    for recipe in (plain, cached):
        recipe.attach(student)
    torch.manual_seed(0)
    a = plain.loss(student, batch)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(cached.loss(student, batch)[0], a)


def test_selecting_every_patch_is_the_no_selection_loss(tiny_teachers, tokenizer):
    data, batch = _batch(tokenizer)
    torch.manual_seed(0)
    student = create_model("fusion", len(tokenizer), len(data.labels), **TINY)
    every = _recipe("mad-no-conf", tiny_teachers, tokenizer, data, k=16)
    none = _recipe("mad-naive", tiny_teachers, tokenizer, data)
    few = _recipe("mad-no-conf", tiny_teachers, tokenizer, data, k=2)
    losses = []
    for recipe in (every, none, few):
        recipe.attach(student)  # same seed -> same projections
        torch.manual_seed(1)
        student.mad_projections.image.reset_parameters()
        student.mad_projections.text.reset_parameters()
        losses.append(recipe.loss(student, batch)[1]["f_image"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert losses[2] != pytest.approx(losses[0], rel=1e-4)


def test_confidence_weights_follow_the_probe(tiny_teachers, tokenizer):
    data, batch = _batch(tokenizer, 16)
    recipe = _recipe("mad", tiny_teachers, tokenizer, data)
    recipe.fit_confidence_probe(data, 64, (4, 4))
    assert set(recipe.probe_info) == {"examples", "train_accuracy", "held_out_accuracy", "held_out_mean_p"}
    targets = recipe.teacher_targets(batch.texts, batch.pixel_values[:, 0], grid=(4, 4))
    keys = [example_key(t, p) for t, p in zip(batch.texts, batch.pixel_values[:, 0])]
    assert len(set(keys) & set(recipe.probe.held_out)) == 16  # the collated batch finds its fitted pairs
    conf = recipe.probe.prob_of_gold(recipe.pooled(targets), batch.labels, keys)
    assert conf.shape == (16,) and ((conf > 0) & (conf < 1)).all()
    assert torch.allclose(conf, torch.tensor([recipe.probe.held_out[k] for k in keys]))


def test_one_image_only(tiny_teachers, tokenizer):
    from workbench.errors import WorkbenchError

    data, batch = _batch(tokenizer, 4, "shapes-nlvr")
    student = create_model("fusion", len(tokenizer), len(data.labels), num_images=2, **TINY)
    recipe = _recipe("mad-naive", tiny_teachers, tokenizer, data)
    recipe.attach(student)
    with pytest.raises(WorkbenchError, match="one image"):
        recipe.loss(student, batch)


# ----------------------------------------------------------------------------------------------
# end to end


def test_tiny_mad_run_trains_the_projections_and_saves_a_plain_fusion_model(tiny_teachers, tokenizer, tmp_path):
    from workbench.models.io import load_checkpoint
    from workbench.train import TrainConfig, train

    data = load_dataset("shapes-vqa", "train", 64)
    recipe = _recipe("mad", tiny_teachers, tokenizer, data, probe_size=32)
    initial = {}
    attach = recipe.attach

    def attach_and_remember(model):
        attach(model)
        initial.update({k: v.detach().clone() for k, v in recipe.projections.state_dict().items()})

    recipe.attach = attach_and_remember
    cfg = TrainConfig(
        model="fusion", dataset="shapes-vqa", out=str(tmp_path / "run"), train_size=64, val_size=16, test_size=16,
        batch_size=16, max_steps=3, warmup_steps=1, log_every=1, size=TINY, recipe="mad",
    )  # fmt: skip
    result = train(cfg, recipe=recipe, progress=False)
    assert result["steps"] == 3 and recipe.probe_info["examples"] == 32
    after = recipe.projections.state_dict()
    assert set(initial) == {"text.weight", "text.bias", "image.weight", "image.bias"}
    assert all(not torch.equal(initial[k], after[k]) for k in initial)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in losses)
    assert all(r["f_text"] > 0 and r["f_image"] > 0 and "conf" in r for r in losses)
    # the training state carries the projections (for --resume); the final checkpoint does not
    with safe_open(str(tmp_path / "run" / "state" / "model.safetensors"), "pt") as f:
        assert "mad_projections.text.weight" in f.keys()
    ck = load_checkpoint(tmp_path / "run" / "model", kind="fusion")  # strict: no unexpected keys
    assert ck.meta["recipe"] == "mad"
    assert all(p.grad is None for t in (recipe.text, recipe.vision) for p in t.parameters())
    # --resume: a fresh recipe attaches new projections, then the training state (strictly) restores them
    again = _recipe("mad", tiny_teachers, tokenizer, data, probe_size=32)
    train(cfg, recipe=again, resume=True, progress=False)
    assert all(torch.equal(again.projections.state_dict()[k], after[k]) for k in after)


def test_distill_cli_mad_with_minilm(tiny_teachers, tmp_path):
    from workbench.cli import main
    from workbench.models.io import load_checkpoint

    out = tmp_path / "student"
    argv = [
        "distill", "--recipe", "mad", "--dataset", "shapes-vqa", "--out", str(out), "--train-size", "32",
        "--val-size", "16", "--test-size", "16", "--batch-size", "16", "--max-steps", "2", "--warmup-steps", "1",
        "--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--vision-teacher", str(tiny_teachers / "mae"),
        "--probe-size", "16", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    ck = load_checkpoint(out / "model", kind="fusion")
    assert ck.meta["recipe"] == "mad" and ck.meta["steps"] == 2
    probe = json.loads((out / "probe.json").read_text())
    assert probe["examples"] == 16 and 0 <= probe["held_out_accuracy"] <= 1
    mad = ck.meta["train_config"]["recipe_args"]
    assert mad["text_teacher"] == "minilm" and mad["token_selection"] and mad["confidence"]
    # no vision teacher where the default points: a clear error, not a traceback
    missing = ["--vision-teacher", str(tmp_path / "nowhere"), "--out", str(tmp_path / "other")]
    assert main([*argv, *missing]) == 2
    # a dide recipe still needs --teacher
    assert main(["distill", "--recipe", "dide", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_run_caches_teacher_image_features_only_when_it_sees_the_pairs_again(epochs, tiny_teachers, tmp_path):
    from workbench.methods import distill
    from workbench.train import TrainConfig

    cfg = TrainConfig(
        dataset="shapes-vqa", out=str(tmp_path / "run"), train_size=32, val_size=16, test_size=16, batch_size=16,
        epochs=epochs, warmup_steps=1, size=dict(hidden_size=32, num_layers=2, num_heads=2), recipe="mad-naive",
    )  # fmt: skip
    config = get_method("mad-naive").config(text_teacher=None, vision_teacher=str(tiny_teachers / "mae"))
    result = distill(cfg, config, progress=False)
    assert result["steps"] == 2 * epochs
    assert result["cached_images"] == (32 if epochs > 1 else 0)  # every training image, once


def test_image_features_survive_a_round_trip_through_a_file_and_a_bad_file_is_ignored(tmp_path):
    from workbench.methods.mad_features import load_image_features, save_image_features

    torch.manual_seed(0)
    cache = {((4, 4), bytes([i]) * 16): torch.randn(16, 8) for i in range(3)}
    cache[(None, bytes([9]) * 16)] = torch.randn(64, 8)  # the teacher's own grid
    path = tmp_path / "features.safetensors"
    save_image_features(cache, path)
    back = load_image_features(path)
    assert back.keys() == cache.keys()
    for key, f in cache.items():
        assert torch.equal(back[key], f)
    assert [p.name for p in tmp_path.iterdir()] == ["features.safetensors"]  # no temporary file left
    path.write_bytes(path.read_bytes()[:100])  # cut short
    with pytest.warns(UserWarning, match="unreadable teacher-feature cache"):
        assert load_image_features(path) == {}


def test_the_teacher_digest_follows_weights_and_normalisation(tiny_teachers):
    from workbench.methods.mad_features import teacher_digest

    a, b = VisionTeacher.from_folder(tiny_teachers / "mae"), VisionTeacher.from_folder(tiny_teachers / "mae")
    assert teacher_digest(a) == teacher_digest(b)
    b.std.mul_(2)  # same weights, another input normalisation: other features
    assert teacher_digest(a) != teacher_digest(b)
    b = VisionTeacher.from_folder(tiny_teachers / "mae")
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert teacher_digest(a) != teacher_digest(b)


def test_a_feature_cache_folder_spares_the_next_run_the_vision_teacher(tiny_teachers, tmp_path, monkeypatch):
    from workbench.methods import distill
    from workbench.models.io import load_checkpoint
    from workbench.train import TrainConfig

    calls = []
    patch_states = VisionTeacher.patch_states
    monkeypatch.setattr(VisionTeacher, "patch_states", lambda self, x: calls.append(len(x)) or patch_states(self, x))
    config = get_method("mad").config(text_teacher=None, vision_teacher=str(tiny_teachers / "mae"))
    cache = tmp_path / "features"

    def run(name):
        cfg = TrainConfig(
            dataset="shapes-vqa", out=str(tmp_path / name), train_size=32, val_size=16, test_size=16, batch_size=16,
            epochs=1, warmup_steps=1, size=dict(hidden_size=32, num_layers=2, num_heads=2), recipe="mad",
        )  # fmt: skip
        calls.clear()
        return distill(cfg, replace(config, feature_cache=str(cache)), progress=False), list(calls)

    first, first_calls = run("first")  # one pass: the probe and the two steps see all 32 images
    assert first["stored_images"] == 0 and first["cached_images"] == 32 and sum(first_calls) > 0
    [file] = cache.iterdir()
    saved = file.stat().st_mtime_ns
    second, second_calls = run("second")
    assert second["stored_images"] == 32 and second["cached_images"] == 0
    assert second_calls == []  # the teacher never ran
    assert file.stat().st_mtime_ns == saved  # nothing new: not rewritten
    one, two = load_checkpoint(tmp_path / "first" / "model"), load_checkpoint(tmp_path / "second" / "model")
    for (name, w1), w2 in zip(one.model.state_dict().items(), two.model.state_dict().values()):
        assert torch.equal(w1, w2), name  # the same features: the same student, bit for bit


def test_probe_is_not_thrown_by_float_noise_on_a_near_constant_channel():
    # the text teacher's features for one text differ by ~1e-6 with its batch-mates; a channel that is
    # constant over the fitting set must not blow that noise up to unit size
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (200,), generator=g)
    informative = torch.nn.functional.one_hot(labels, 3).float() + 0.3 * torch.randn(200, 3, generator=g)
    constant = torch.full((200, 1), 0.5)
    features = torch.cat([informative, constant], dim=1)
    noisy = features + 1e-6 * torch.randn(features.shape, generator=g)
    a = fit_probe(features + 1e-7 * torch.randn(features.shape, generator=g), labels, 3)
    b = fit_probe(noisy, labels, 3)
    with torch.no_grad():
        pa, pb = a(features).softmax(-1), b(features).softmax(-1)
    assert (pa - pb).abs().max() < 1e-2
