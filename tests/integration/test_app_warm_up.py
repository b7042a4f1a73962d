"""The app's start-up warm-up: one query per checkpoint, and one IG map for a large model too (the Attention
tab's first click would otherwise fault in its memory)."""

from contextlib import nullcontext

import pytest

from workbench.app import loading
from workbench.app.loading import warm_up
from workbench.models.io import load_checkpoint


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint("assets/shapes-vqa-teacher"), load_checkpoint("assets/shapes-vqa-student")


def test_large_models_compute_one_ig_map_each_and_a_shared_teacher_once(shipped, monkeypatch):
    teacher, student = shipped
    large = {id(teacher.model)}  # as if only the teacher were ViLT-sized
    monkeypatch.setattr(loading, "is_large", lambda model: id(model) in large)
    asked, warmed = [], []
    monkeypatch.setattr(loading, "ask", lambda ck, *a, **k: asked.append(ck))
    real = loading._warm_up_ig
    monkeypatch.setattr(loading, "_warm_up_ig", lambda ck, image: (warmed.append(ck), real(ck, image)))
    warm_up({"vqa": (teacher, student), "again": (teacher, None)})
    assert asked == [teacher, student]  # each checkpoint once, though the teacher is in two pairs
    assert warmed == [teacher]


def test_toy_models_skip_the_ig_warm_up(shipped, monkeypatch):
    teacher, student = shipped
    monkeypatch.setattr(loading, "_warm_up_ig", lambda ck, image: pytest.fail("a toy model was warmed with IG"))
    warm_up({"vqa": (teacher, student)})  # the shipped models are small: fp32, no IG warm-up


def test_the_ig_warm_up_runs_the_attention_tabs_map(shipped, monkeypatch):
    """The same map the tab computes: Integrated Gradients, with the tab's steps, in the model's fast precision."""
    import workbench.explain
    from workbench.explain.attribution import TAB_IG_STEPS

    teacher, _ = shipped
    calls = []
    real = workbench.explain.explain
    monkeypatch.setattr(workbench.explain, "explain", lambda *a, **k: calls.append((a[3], k)) or real(*a, **k))
    monkeypatch.setattr(loading, "inference_precision", lambda model, p: calls.append(p) or nullcontext())
    loading._warm_up_ig(teacher, loading.Image.new("RGB", (64, 64), "white"))
    assert calls == ["auto", (("ig",), {"ig_steps": TAB_IG_STEPS})] and TAB_IG_STEPS == 16
