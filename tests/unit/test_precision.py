"""The precision of the many-pass explanations (`workbench.models.precision`): what "auto" chooses, and that bf16
autocast changes the curves and Integrated Gradients only, within rounding, and never the one-pass maps."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from workbench.bench.preset import preset_checkpoints
from workbench.explain.report import explain_models
from workbench.models import precision
from workbench.models.precision import AUTO_MIN_PARAMS, inference_precision, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")


def test_explicit_precisions_are_kept_and_unknown_ones_refused():
    tiny = nn.Linear(2, 2)
    assert resolve_precision("fp32", tiny) == "fp32"
    assert resolve_precision("bf16", tiny) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", tiny)


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_for_a_large_model_on_native_hardware(monkeypatch, native):
    monkeypatch.setattr(precision, "bf16_native", lambda device_type: native)
    small = nn.Linear(10, 10)
    large = nn.Linear(AUTO_MIN_PARAMS // 1000, 1000)  # exactly AUTO_MIN_PARAMS weights (+ 1000 biases)
    just_below = nn.Linear(AUTO_MIN_PARAMS // 1000 - 1, 1000, bias=False)
    assert resolve_precision("auto", small) == "fp32"
    assert resolve_precision("auto", just_below) == "fp32"
    assert resolve_precision("auto", large) == ("bf16" if native else "fp32")


@pytest.mark.parametrize(
    ("capabilities", "native"),
    [
        ({"avx512_f": True, "avx512_bw": True, "avx512_bf16": False, "amx_bf16": False}, False),  # emulated: slower
        ({"avx512_f": True, "avx512_bf16": True}, True),
        ({"amx_bf16": True}, True),
        ({}, False),  # a torch that cannot tell
    ],
)
def test_a_cpu_runs_bf16_natively_only_with_bf16_instructions(monkeypatch, capabilities, native):
    """oneDNN reports bf16 support on every AVX-512 CPU, but without AVX-512 BF16 or AMX it converts to fp32 and
    is about 3x slower than fp32: "auto" must not choose it there."""
    monkeypatch.setattr(precision, "_cpu_capabilities", lambda: capabilities)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: True)
    assert precision.bf16_native("cpu") is native
    large = nn.Linear(AUTO_MIN_PARAMS // 1000, 1000)
    assert resolve_precision("auto", large) == ("bf16" if native else "fp32")


def test_this_machines_cpu_is_read_from_torch():
    caps = torch.cpu.get_capabilities()
    assert precision.bf16_native("cpu") == (bool(caps.get("avx512_bf16") or caps.get("amx_bf16")) and
                                            precision._onednn_bf16())  # fmt: skip


def test_bf16_runs_matrix_products_in_bfloat16_and_fp32_does_not():
    model = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with inference_precision(model, "bf16") as chosen:
        assert chosen == "bf16" and model(x).dtype == torch.bfloat16
    with inference_precision(model, "fp32") as chosen:
        assert chosen == "fp32" and model(x).dtype == torch.float32
    assert model(x).dtype == torch.float32  # nothing left switched on


@pytest.fixture(scope="module")
def toy_explanations():
    """The toy preset's teacher and student (random weights) explained in fp32 and in bf16."""
    teacher, students = preset_checkpoints("toy", ("student",))
    image = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8"))
    models = {"teacher": teacher, "student": students["student"]}
    run = {
        p: explain_models(models, image, "is there a red circle?", random_orders=1, precision=p)
        for p in ("fp32", "bf16", "auto")
    }
    return run


def test_auto_on_the_toy_size_is_fp32_and_identical(toy_explanations):
    fp32, auto = toy_explanations["fp32"]["summary"], toy_explanations["auto"]["summary"]
    for name in ("teacher", "student"):
        assert auto["models"][name]["precision"] == "fp32"
        assert auto["models"][name]["faithfulness"] == fp32["models"][name]["faithfulness"]
        for method, m in fp32["models"][name]["maps"].items():
            assert auto["models"][name]["maps"][method] == m


def test_bf16_changes_only_the_curves_and_ig_and_only_by_rounding(toy_explanations):
    fp32, bf16 = toy_explanations["fp32"]["summary"], toy_explanations["bf16"]["summary"]
    for name in ("teacher", "student"):
        a, b = fp32["models"][name], bf16["models"][name]
        assert b["precision"] == "bf16" and a["precision"] == "fp32"
        for method in ("attention", "rollout", "relevancy"):  # one pass each: always fp32, bit for bit
            assert a["maps"][method] == b["maps"][method]
        ig_a, ig_b = np.asarray(a["maps"]["ig"]).ravel(), np.asarray(b["maps"]["ig"]).ravel()
        assert not np.array_equal(ig_a, ig_b)  # bf16 did run (else this test checks nothing)
        assert np.corrcoef(ig_a, ig_b)[0, 1] > 0.95
        for method, aucs in a["faithfulness"].items():
            for mode, value in aucs.items():
                assert b["faithfulness"][method][mode] == pytest.approx(value, abs=0.02)
