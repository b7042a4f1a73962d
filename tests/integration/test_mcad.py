"""MCAD and the retrieval baselines: every recipe trains the student only, a tiny end-to-end run writes a
checkpoint with retrieval metrics. The MCAD grid's tests: tests/integration/test_experiments.py."""

import json

import pytest
import torch

from workbench.data import Collator, load_dataset
from workbench.data.shapes import ITM_LABELS
from workbench.methods import get_method, method_names
from workbench.methods.mcad import RetrievalObjective, fit_fused_map
from workbench.models import create_model
from workbench.retrieval import DualEncoder, FusionMatcher

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
RETRIEVAL_RECIPES = method_names(task="retrieval")


def make_retrieval_recipe(name, dual=None, fusion=None, fused_map=None):
    """The objective a retrieval method's run trains with (a recipe with fused features gets a map fitted on
    16 training pairs when none is given)."""
    config = get_method(name).config()
    if fused_map is None and dual is not None and fusion is not None and config.gamma:
        fused_map = fit_fused_map(dual, fusion, "shapes-retrieval", 16)
    return RetrievalObjective(name, dual, fusion, config, fused_map)


def default_weights(name):
    return get_method(name).config()


@pytest.fixture(scope="module")
def parts(tokenizer):
    torch.manual_seed(0)
    dual = create_model("dual", len(tokenizer), 0, hidden_size=48, num_layers=2, num_heads=2, embed_dim=24)
    fusion = create_model("fusion", len(tokenizer), 2, **TINY)
    data = load_dataset("shapes-retrieval", "train", 8)
    batch = Collator(tokenizer, 64)([data[i] for i in range(8)])
    return DualEncoder(dual, tokenizer), FusionMatcher(fusion, tokenizer, ITM_LABELS), batch


@pytest.mark.parametrize("name", RETRIEVAL_RECIPES)
def test_each_recipe_gives_a_finite_loss_whose_gradients_reach_the_student_never_the_teachers(name, parts, tokenizer):
    dual, fusion, batch = parts
    recipe = make_retrieval_recipe(name, dual, fusion)
    torch.manual_seed(1)
    student = create_model("dual", len(tokenizer), 0, embed_dim=24, **TINY)
    loss, logs = recipe.loss(student, batch)
    assert torch.isfinite(loss) and all(v == v for v in logs.values())
    loss.backward()
    for module in (student.image_tower, student.text_tower, student.image_proj, student.text_proj):
        assert sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None) > 0, (name, module)
    assert student.logit_scale.grad is not None
    for teacher in (dual.model, fusion.model):
        assert all(p.grad is None for p in teacher.parameters())
    w = default_weights(name)
    assert ("contrastive" in logs) == bool(w.contrastive) and ("kl_i2t" in logs) == bool(w.kl)
    assert ("feature" in logs) == bool(w.feature) and ("fused_pairs" in logs) == bool(w.alpha and w.kl)
    if "fused_pairs" in logs:  # the diagonal plus the top-3 of each row and column
        assert 8 <= logs["fused_pairs"] <= 8 * 7


def test_recipes_say_which_teacher_is_missing(parts):
    dual, fusion, _ = parts
    with pytest.raises(ValueError, match="dual-encoder teacher"):
        make_retrieval_recipe("clipkd")
    with pytest.raises(ValueError, match="fusion teacher"):
        make_retrieval_recipe("mcad", dual)
    assert make_retrieval_recipe("mcad-nofused", dual).fusion is None  # gamma = alpha = 0: no fusion teacher
    with pytest.raises(ValueError, match="fitted map"):
        RetrievalObjective("mcad", dual, fusion, get_method("mcad").config())
    assert make_retrieval_recipe("clip", dual, fusion).dual is None  # contrastive only: teachers unused


def test_mcad_without_the_fused_signal_uses_the_dual_teachers_distribution(parts, tokenizer):
    dual, fusion, batch = parts
    with_fused = make_retrieval_recipe("mcad", dual, fusion).teacher_side(batch)
    without = make_retrieval_recipe("mcad-nofused", dual).teacher_side(batch)
    plain = dual.logit_scale() * dual.image_embeddings(batch.pixel_values[:, 0]) @ dual.embed_texts(batch.texts).T
    torch.testing.assert_close(without["logits"], plain)
    assert not torch.allclose(with_fused["logits"], plain)


def test_mcad_mixes_the_fusion_teachers_pair_states_into_both_sides_and_the_scalar_ablation_adds_log_match(parts):
    from workbench import losses

    dual, fusion, batch = parts
    fused_map = fit_fused_map(dual, fusion, "shapes-retrieval", 16)
    t = make_retrieval_recipe("mcad", dual, fusion, fused_map).teacher_side(batch)
    pixels, texts = batch.pixel_values[:, 0], batch.texts
    f = fused_map(fusion.pooled(pixels, texts))  # [B, D] unit vectors in the dual teacher's space
    u, v = dual.image_embeddings(pixels), dual.embed_texts(texts)
    u2, v2 = torch.nn.functional.normalize(u + f, dim=-1), torch.nn.functional.normalize(v + f, dim=-1)
    torch.testing.assert_close(t["logits"], dual.logit_scale() * u2 @ v2.T)
    u3, v3 = losses.modified_teacher_features(u2, v2, t["logits"], beta=0.5)
    torch.testing.assert_close(t["image"], u3)
    torch.testing.assert_close(t["text"], v3)
    assert t["pairs"] == 0  # no matching-head scores: gamma only
    scalar = make_retrieval_recipe("mcad-scalar", dual, fusion).teacher_side(batch)
    plain = dual.logit_scale() * u @ v.T
    g = fusion.pair_log_match(pixels, texts, losses.fusion_pair_mask(plain, 3))
    torch.testing.assert_close(scalar["logits"], losses.fused_teacher_logits(plain, g, 1.0))


def _cli(*args):
    from workbench.cli import main

    assert main(list(args)) == 0


SMALL = ["--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--train-size", "48", "--batch-size", "16"]
SMALL += ["--val-size", "16", "--test-size", "16", "--warmup-steps", "2", "--no-progress"]


def test_tiny_distill_retrieval_run_writes_a_student_with_retrieval_metrics(tmp_path, tokenizer, capsys):
    from workbench.models.clip import load_dual_encoder
    from workbench.models.io import save_checkpoint

    start = create_model("dual", len(tokenizer), 0, embed_dim=40, **TINY)  # (its tokenizer: no vocabulary build)
    save_checkpoint(start, tokenizer, tmp_path / "start", {"task": "retrieval", "labels": []})
    _cli("distill-retrieval", "--recipe", "clip", "--init-from", str(tmp_path / "start"), "--max-steps", "2",
         "--out", str(tmp_path / "teacher"), *SMALL)  # fmt: skip
    # `clip` learns from no teacher: it records no teacher fingerprints, so no rebuilt teacher makes it stale
    assert "teacher_fingerprints" not in json.loads((tmp_path / "teacher" / "model" / "workbench.json").read_text())
    fusion = create_model("fusion", len(tokenizer), 2, **TINY)
    save_checkpoint(fusion, tokenizer, tmp_path / "fusion", {"task": "itm", "labels": list(ITM_LABELS)})
    _cli(
        "distill-retrieval", "--recipe", "mcad", "--dual-teacher", str(tmp_path / "teacher" / "model"),
        "--fusion-teacher", str(tmp_path / "fusion"), "--out", str(tmp_path / "student"), "--alpha", "0.5",
        "--adapter-pairs", "24", "--max-steps", "2", *SMALL,
    )  # fmt: skip
    meta = json.loads((tmp_path / "student" / "model" / "workbench.json").read_text())
    test = meta["metrics"]["test"]
    assert meta["kind"] == "dual" and meta["recipe"] == "mcad" and meta["steps"] == 2
    assert test["n_images"] == 16 and {"R@1", "R@5", "R@10", "median_rank"} <= set(test["i2t"]) and "query_ms" in test
    assert test["accuracy"] == test["r1"] and test["params"] > 0 and test["index"]["seconds"] > 0
    args = meta["train_config"]["recipe_args"]
    assert args["dual_teacher"].endswith("teacher/model") and args["alpha"] == 0.5 and args["gamma"] == 1.0
    assert args["adapter_pairs"] == 24
    # both teachers' weights, so the results grid can tell a student of a since-rebuilt one
    from workbench.models.io import weights_fingerprint

    assert meta["teacher_fingerprints"] == {
        "dual_teacher": weights_fingerprint(tmp_path / "teacher" / "model"),
        "fusion_teacher": weights_fingerprint(tmp_path / "fusion"),
    }
    log = [json.loads(x) for x in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy" in x and "i2t R@1" in x["val_per_type"] for x in log)
    student = load_dual_encoder(tmp_path / "student" / "model").model
    assert student.image_proj.out_features == 40  # the teacher's embedding width
    assert "image->text" in capsys.readouterr().out

    out = tmp_path / "eval.json"
    _cli("retrieval", str(tmp_path / "student" / "model"), "--size", "12", "--rerank", str(tmp_path / "fusion"),
         "--rerank-k", "3", "--out", str(out), "--no-progress")  # fmt: skip
    metrics = json.loads(out.read_text())
    assert metrics["n_images"] == 12 and metrics["reranked"]["k"] == 3 and metrics["dataset"] == "shapes-retrieval-hard"


def test_distill_retrieval_refuses_other_datasets_and_missing_teachers(tmp_path, capsys):
    from workbench.cli import main

    assert main(["distill-retrieval", "--recipe", "clipkd", "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    # the hard gallery's groups of 4 near-duplicates are batched whole
    args = ["distill-retrieval", "--recipe", "clip", "--batch-size", "6", "--train-size", "24", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "g")]) == 2 and "multiple of 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["distill-retrieval", "--dataset", "shapes-vqa", "--out", str(tmp_path / "s")])
