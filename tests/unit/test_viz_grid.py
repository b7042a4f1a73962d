"""`viz.head_grid` builds its figure as one dict (fast at ViLT-B's 144 panels): its panels sit where
make_subplots puts them, titled as make_subplots titles them, each map over its own picture."""

import numpy as np
import pytest
from PIL import Image
from plotly.subplots import make_subplots

from workbench import viz


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (3, 4), (12, 12)])
def test_grid_domains_are_make_subplots(rows, cols):
    hs, vs = viz.HEAD_GRID_SPACING
    titles = [f"{i}" for i in range(rows * cols)]
    ref = make_subplots(rows=rows, cols=cols, horizontal_spacing=hs, vertical_spacing=vs, subplot_titles=titles)
    xs, ys = viz.grid_domains(rows, cols, viz.HEAD_GRID_SPACING)
    for k in range(rows * cols):
        i, j = divmod(k, cols)
        suffix = "" if k == 0 else str(k + 1)
        np.testing.assert_allclose(ref.layout[f"xaxis{suffix}"].domain, xs[j], atol=1e-12)
        np.testing.assert_allclose(ref.layout[f"yaxis{suffix}"].domain, ys[i], atol=1e-12)
        title = ref.layout.annotations[k]
        assert (title.x, title.y) == pytest.approx(((xs[j][0] + xs[j][1]) / 2, ys[i][1]))


def test_head_grid_panels_are_wired_to_their_axes_with_one_colour_scale():
    maps = np.arange(2 * 3 * 4 * 4, dtype=float).reshape(2, 3, 4, 4)
    fig = viz.head_grid(maps, title="t", image=Image.new("RGB", (64, 64), "white"))
    heat = [t for t in fig.data if t.type == "heatmap"]
    pictures = [t for t in fig.data if t.type == "image"]
    assert len(heat) == len(pictures) == 6
    for k, (h, p) in enumerate(zip(heat, pictures)):
        axis = "" if k == 0 else str(k + 1)
        assert (h.xaxis, h.yaxis) == (p.xaxis, p.yaxis) == (f"x{axis}", f"y{axis}")
        assert fig.layout[f"yaxis{axis}"].scaleanchor == f"x{axis}"
        assert fig.layout[f"yaxis{axis}"].autorange == "reversed"  # row 0 at the top
        np.testing.assert_array_equal(np.asarray(h.z), maps[k // 3, k % 3])
        assert (h.zmin, h.zmax) == (0.0, maps.max()) and h.showscale == (k == 0)
    assert [a.text for a in fig.layout.annotations][:4] == ["layer 0 · head 0", "layer 0 · head 1",
                                                             "layer 0 · head 2", "layer 1 · head 0"]  # fmt: skip
    assert fig.layout.title.text == "t" and fig.layout.width == 3 * viz.PANEL_PX + 120
    with pytest.raises(ValueError, match="layers, heads"):
        viz.head_grid(np.zeros((2, 2)))
