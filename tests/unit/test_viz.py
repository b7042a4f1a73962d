"""Plotly figure helpers (workbench/viz.py)."""

import numpy as np
import pytest

from workbench import viz
from workbench.viz import experiment_grid_bars, patch_maps_side_by_side, top_answers_bar, training_curves


def test_patch_maps_share_one_colour_scale():
    teacher = np.arange(16, dtype=float).reshape(4, 4) / 100  # 0.00 .. 0.15
    student = np.full((4, 4), 0.05)
    student[3, 3] = 0.4
    fig = patch_maps_side_by_side({"teacher": teacher, "student": student}, title="'square' -> patches")
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2
    assert {(h.zmin, h.zmax) for h in heatmaps} == {(0.0, 0.4)}  # global min and max
    assert [bool(h.showscale) for h in heatmaps] == [False, True]  # one colour bar
    assert [a.text for a in fig.layout.annotations] == ["teacher", "student"]
    assert fig.layout.title.text == "'square' -> patches"
    np.testing.assert_array_equal(np.asarray(heatmaps[0].z), teacher)
    # grid row 0 at the top, as in the image
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.yaxis2.autorange == "reversed"


def test_patch_maps_any_number_of_panels():
    maps = {name: np.random.default_rng(i).random((3, 5)) for i, name in enumerate("abc")}
    fig = patch_maps_side_by_side(maps, title="t")
    assert len(fig.data) == 3
    lo = min(m.min() for m in maps.values())
    hi = max(m.max() for m in maps.values())
    assert all(h.zmin == pytest.approx(lo) and h.zmax == pytest.approx(hi) for h in fig.data)


@pytest.mark.parametrize("maps", [{}, {"a": np.zeros(4)}, {"a": np.zeros((0, 4))}])
def test_patch_maps_reject_bad_input(maps):
    with pytest.raises(ValueError):
        patch_maps_side_by_side(maps, title="t")


def test_top_answers_bar_best_on_top():
    fig = top_answers_bar([("yes", 0.9), ("no", 0.1)], title="q")
    assert list(fig.data[0].y) == ["no", "yes"]


def test_training_curves_two_traces():
    records = [{"step": 50, "loss": 1.0}, {"step": 100, "loss": 0.5}, {"step": 100, "val_accuracy": 0.7}]
    fig = training_curves(records)
    assert [list(t.x) for t in fig.data] == [[50, 100], [100]]
    assert fig.data[1].yaxis == "y2"


def test_experiment_grid_bars_one_panel_per_task_and_gaps_for_unrun_rows():
    def cell(mean, std, seeds):
        return {"seeds": seeds, "accuracy": {"mean": mean, "std": std, "values": []}}

    results = {
        "shapes-vqa": {"low1": {"none": cell(0.5, 0.01, [0, 1]), "mad": cell(0.6, 0.02, [0, 1])}},
        "shapes-ve": {
            "low1": {"none": cell(0.7, None, [0]), "mad": cell(0.8, 0.03, [0, 1])},
            "full": {"none": {"seeds": [], "accuracy": {"mean": None, "std": None}}, "mad": cell(0.9, 0.0, [0, 1])},
        },
    }
    fig = experiment_grid_bars(results, title="MAD")
    assert [a.text for a in fig.layout.annotations] == ["shapes-vqa", "shapes-ve"]
    assert [(t.name, t.xaxis) for t in fig.data] == [("none", "x"), ("mad", "x"), ("none", "x2"), ("mad", "x2")]
    assert [bool(t.showlegend) for t in fig.data] == [True, True, False, False]  # one legend entry a row
    ve_none, ve_mad = fig.data[2], fig.data[3]
    assert list(ve_none.x) == ["low1", "full"]
    assert list(ve_none.y) == [0.7, None]  # not run: no bar
    assert list(ve_none.error_y.array) == [0.0, None]  # one seed: no spread
    assert list(ve_mad.y) == [0.8, 0.9] and list(ve_mad.error_y.array) == [0.03, 0.0]
    assert ve_none.hovertext[1] == "none, full: not run"
    assert ve_mad.hovertext[0] == "mad, low1: 80.0% ± 3.0% (2 seeds)"
    assert fig.data[0].marker.color == fig.data[2].marker.color  # a row keeps its colour across panels


def test_width_curve_draws_the_speedup_its_range_the_flop_ratio_and_the_share_reached():
    curve = {
        "label": "speed only: untrained weights",
        "points": [
            {"width": 64, "speedup": 2.0, "speedup_range": [1.5, 2.5], "flop_ratio": 10.0},
            {"width": 768, "speedup": 8.0, "speedup_range": [7.0, 9.0], "flop_ratio": 10.0},
        ],
    }
    fig = viz.width_curve_figure(curve)
    speed, flops, share = fig.data
    assert list(speed.y) == [2.0, 8.0] and list(speed.error_y.array) == [0.5, 1.0]
    assert list(speed.error_y.arrayminus) == [0.5, 1.0] and list(flops.y) == [10.0, 10.0]
    assert list(share.y) == [0.2, 0.8] and share.yaxis == "y2" and fig.layout.xaxis.type == "log"
    assert "untrained weights" in fig.layout.title.text
    with pytest.raises(ValueError, match="no points"):
        viz.width_curve_figure({"label": "", "points": []})


def test_compare_training_curves_names_each_runs_traces_and_dots_the_baseline():
    records = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "val_accuracy": 0.5}]
    fig = viz.compare_training_curves({"none": records, "dide": records}, baseline="none", title="t")
    names = [t.name for t in fig.data]
    assert names and all(n.startswith(("none: ", "dide: ")) for n in names)
    assert {n.split(": ")[0] for n in names} == {"none", "dide"}
    assert all((t.line.dash == "dot") == t.name.startswith("none: ") for t in fig.data)
    assert fig.layout.title.text == "t"
