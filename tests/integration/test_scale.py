"""`workbench scale` on the toy preset: the measurement the docs report at paper size, end to end."""

import json

from workbench.cli import main
from workbench.scale import ScaleRun, default_runs, step_flops


def test_scale_measures_a_distillation_step_in_its_own_process(tmp_path):
    out = tmp_path / "scale.json"
    args = ["scale", "--preset", "toy", "--single", "--steps", "1", "--batch-size", "2", "--precision", "bf16"]
    assert main([*args, "--out", str(out)]) == 0
    run, flops = json.loads(out.read_text())
    assert run["preset"] == "toy" and run["precision"] == "bf16" and run["mode"] == "distill"
    assert run["seconds_per_step"] > 0 and 0.05 < run["peak_rss_gb"] < 8
    assert run["params"]["student"] > run["params"]["teacher"] > 0  # two towers of the teacher's width and depth
    assert "untrained" in run["weights"]
    # a step is the teacher's forward plus the student's forward and backward: several teacher forwards
    assert flops["flops"]["distill_step"] > 2 * flops["flops"]["teacher_forward"] > 0


def test_the_default_set_is_fp32_and_bf16_for_a_step_and_for_teacher_inference():
    runs = default_runs("vilt-b32")
    assert {(r.mode, r.precision, r.batch_size) for r in runs} == {
        ("distill", "fp32", 8), ("distill", "bf16", 8), ("teacher", "fp32", 32), ("teacher", "bf16", 32)
    }  # fmt: skip
    flops = step_flops(ScaleRun(batch_size=2, preset="toy"))
    assert flops["distill_step"] == 2 * step_flops(ScaleRun(batch_size=1, preset="toy"))["distill_step"]
