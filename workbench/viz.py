"""Plotly figures: the one place figures are made. The app and the notebooks call these."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.pictures import data_uri, rgb_array


def top_answers_bar(top: list[tuple[str, float]], title: str = "top answers") -> go.Figure:
    """Horizontal bars of (answer, probability), best on top."""
    labels = [a for a, _ in top][::-1]
    probs = [p for _, p in top][::-1]
    fig = go.Figure(
        go.Bar(
            x=probs,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in probs],
            textposition="auto",
            marker_color="#4c78a8",
        )
    )
    fig.update_layout(
        title=title,
        xaxis=dict(range=[0, 1], title="probability", tickformat=".0%"),
        height=80 + 40 * len(top),
        margin=dict(l=10, r=10, t=40, b=40),
    )
    return fig


def training_curves(records: list[dict], metric: str = "val_accuracy") -> go.Figure:
    """Loss and validation accuracy against steps from a run's metrics.jsonl records."""
    fig = go.Figure()
    loss = [r for r in records if "loss" in r]
    val = [r for r in records if metric in r]
    fig.add_scatter(x=[r["step"] for r in loss], y=[r["loss"] for r in loss], name="training loss")
    fig.add_scatter(
        x=[r["step"] for r in val], y=[r[metric] for r in val], name=metric, yaxis="y2", mode="lines+markers"
    )
    fig.update_layout(
        xaxis_title="step",
        yaxis=dict(title="loss"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1]),
    )
    return fig


def compare_training_curves(runs: dict[str, list[dict]], baseline: str | None = None, title: str = "") -> go.Figure:
    """Training loss and validation accuracy of several runs (name -> metrics.jsonl records) in one figure,
    each trace named `<run>: <curve>`; the `baseline` run's traces are dotted. The losses of different methods
    are not on one scale (cross-entropy vs. a sum of distillation terms): compare their shapes."""
    fig = go.Figure(layout=training_curves([]).layout)  # one run's axes: loss on the left, accuracy on the right
    for name, records in runs.items():
        for trace in training_curves(records).data:
            trace.update(name=f"{name}: {trace.name}")
            if name == baseline:
                trace.update(line_dash="dot")
            fig.add_trace(trace)
    return fig.update_layout(title=title)


def _panel_traces(m, zmin, zmax, colorscale, showscale, zlabel, image=None, opacity=0.6, max_side: int = 512):
    """The traces of one [rows, cols] map, as plain dicts (a figure takes them as they are, without building a
    graph object per trace): a heatmap, over `image` (in pixel coordinates, embedded at most `max_side` pixels a
    side, encoded once for every panel that shows it) if given."""
    rows, cols = m.shape
    hover = [[f"row {r}, col {c}: {m[r, c]:.3g}" for c in range(cols)] for r in range(rows)]
    heat = dict(type="heatmap", z=m, zmin=zmin, zmax=zmax, colorscale=colorscale, showscale=showscale,
                colorbar=dict(title=dict(text=zlabel)), hovertext=hover, hoverinfo="text")  # fmt: skip
    if image is None:
        return [heat]
    arr = rgb_array(image)
    source, scale = data_uri(arr, max_side)
    ph, pw = round(arr.shape[0] * scale) / rows, round(arr.shape[1] * scale) / cols
    return [dict(type="image", source=source, hoverinfo="skip"),
            dict(heat, x0=pw / 2, dx=pw, y0=ph / 2, dy=ph, opacity=opacity)]  # fmt: skip


def _panel_axes(image) -> tuple[dict, dict]:
    """(x axis, y axis) settings of a map panel: row 0 at the top, cells square; ticks only without a picture."""
    ticks = dict(dtick=1) if image is None else dict(showticklabels=False)
    return dict(constrain="domain", **ticks), dict(autorange="reversed", **ticks)


def _map_panel(fig, m, row, col, zmin, zmax, colorscale, showscale, zlabel, image=None, opacity=0.6) -> None:
    """One [rows, cols] map in subplot (row, col); over `image` if given."""
    for trace in _panel_traces(m, zmin, zmax, colorscale, showscale, zlabel, image, opacity):
        fig.add_trace(trace, row=row, col=col)
    x_axis, y_axis = _panel_axes(image)
    fig.update_xaxes(**x_axis, row=row, col=col)
    fig.update_yaxes(**y_axis, row=row, col=col)


def _scale(arrays, zmin, zmax, symmetric) -> tuple[float, float]:
    lo = min(float(m.min()) for m in arrays) if zmin is None else zmin
    hi = max(float(m.max()) for m in arrays) if zmax is None else zmax
    if symmetric:
        hi = max(abs(lo), abs(hi))
        lo = -hi
    return lo, hi


def patch_maps_side_by_side(
    maps: dict[str, np.ndarray],
    title: str = "",
    colorscale: str = "Viridis",
    zlabel: str = "attention",
    image=None,
    opacity: float = 0.6,
    zmin: float | None = None,
    zmax: float | None = None,
    symmetric: bool = False,
) -> go.Figure:
    """One heatmap per named 2-D map (e.g. a word's attention over the patch grid), side by side.

    All panels share one colour scale (zmin/zmax are the global min/max unless given; `symmetric`
    centres it on 0 for signed maps such as Integrated Gradients) and one colour bar, so the same
    colour means the same value everywhere; grid row 0 is drawn at the top, as in the image. With
    `image` (PIL or array) every map is drawn semi-transparently (`opacity`) over the picture.
    """
    if not maps:
        raise ValueError("no maps to draw")
    arrays = {name: np.asarray(m, dtype=float) for name, m in maps.items()}
    for name, m in arrays.items():
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"map {name!r} must be a non-empty 2-D array, got shape {m.shape}")
    lo, hi = _scale(arrays.values(), zmin, zmax, symmetric)
    n = len(arrays)
    fig = make_subplots(rows=1, cols=n, subplot_titles=list(arrays), horizontal_spacing=0.06)
    for col, m in enumerate(arrays.values(), start=1):
        _map_panel(fig, m, 1, col, lo, hi, colorscale, col == n, zlabel, image, opacity)
        anchor = "x" if col == 1 else f"x{col}"
        fig.update_yaxes(scaleanchor=anchor, row=1, col=col)
    fig.update_layout(title=title, height=320, width=260 * n + 120, margin=dict(l=10, r=10, t=70, b=10))
    return fig


# ----------------------------------------------------------------------------------------------
# explanations (workbench.explain) and error analysis (workbench.evaluate)


def patch_map_overlay(
    image, patch_map: np.ndarray, title: str = "", colorscale: str = "Viridis", opacity: float = 0.6, **scale
) -> go.Figure:
    """One [rows, cols] map drawn semi-transparently over the picture (row 0 at the top)."""
    return patch_maps_side_by_side(
        {title or "map": patch_map}, title, colorscale, image=image, opacity=opacity, **scale
    )


def word_strip(tokens: list[str], weights: dict[str, np.ndarray], title: str = "", zlabel: str = "weight") -> go.Figure:
    """One row of per-token weights per name (e.g. teacher and student), one shared colour scale.
    Tokens may repeat ("the ... the"): the x axis is positional, labelled with the tokens."""
    if not weights:
        raise ValueError("no weights to draw")
    rows = {name: np.asarray(w, dtype=float).reshape(-1) for name, w in weights.items()}
    for name, w in rows.items():
        if len(w) != len(tokens):
            raise ValueError(f"{name!r} has {len(w)} weights for {len(tokens)} tokens")
    z = np.stack(list(rows.values()))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(len(tokens))),
            y=list(rows),
            colorscale="Viridis",
            colorbar=dict(title=zlabel),
            text=[[f"{v:.3f}" for v in r] for r in z],
            texttemplate="%{text}",
            hovertemplate="%{y} · token %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(tokens))), ticktext=tokens, side="top")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=title,
        height=max(220, 120 + 45 * len(rows)),
        width=max(420, 70 * len(tokens) + 160),
        margin=dict(t=90, l=10),
    )
    return fig


PANEL_PX = 200  # the side of one `head_grid` panel, in screen pixels


def head_grid(
    maps: np.ndarray,
    title: str = "",
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    image=None,
    colorscale: str = "Viridis",
    opacity: float = 0.6,
) -> go.Figure:
    """A grid of patch maps, e.g. [layers, heads, rows, cols] (or [heads, rows, cols]), one colour scale."""
    maps = np.asarray(maps, dtype=float)
    if maps.ndim == 3:
        maps = maps[None]
    if maps.ndim != 4 or maps.size == 0:
        raise ValueError(f"expected [layers, heads, rows, cols] maps, got shape {maps.shape}")
    n_rows, n_cols = maps.shape[:2]
    row_labels = row_labels or [f"layer {i}" for i in range(n_rows)]
    col_labels = col_labels or [f"head {j}" for j in range(n_cols)]
    lo, hi = float(maps.min()), float(maps.max())
    # the whole figure as one dict, validated once: make_subplots and per-panel updates cost about a second for
    # ViLT-B's 144 panels; the picture at the panel's size on screen keeps a ViLT-B/32 grid a few MB
    xs, ys = grid_domains(n_rows, n_cols, HEAD_GRID_SPACING)
    (x_axis, y_axis), traces, layout, annotations = _panel_axes(image), [], {}, []
    for k in range(n_rows * n_cols):
        i, j = divmod(k, n_cols)
        suffix = "" if k == 0 else str(k + 1)
        for t in _panel_traces(maps[i, j], lo, hi, colorscale, k == 0, "", image, opacity, PANEL_PX):
            traces.append(dict(t, xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        layout[f"xaxis{suffix}"] = dict(x_axis, domain=xs[j], anchor=f"y{suffix}")
        layout[f"yaxis{suffix}"] = dict(y_axis, domain=ys[i], anchor=f"x{suffix}", scaleanchor=f"x{suffix}")
        annotations.append(dict(text=f"{row_labels[i]} · {col_labels[j]}", x=(xs[j][0] + xs[j][1]) / 2, y=ys[i][1],
                                xref="paper", yref="paper", xanchor="center", yanchor="bottom", showarrow=False,
                                font=dict(size=10)))  # fmt: skip
    layout.update(
        title=dict(text=title), annotations=annotations, height=PANEL_PX * n_rows + 90,
        width=PANEL_PX * n_cols + 120, margin=dict(l=10, r=10, t=80),
    )  # fmt: skip
    return go.Figure(dict(data=traces, layout=layout))


HEAD_GRID_SPACING = (0.03, 0.06)  # (horizontal, vertical) gaps between panels, as fractions of the figure


def grid_domains(n_rows: int, n_cols: int, spacing: tuple[float, float]) -> tuple[list, list]:
    """([x domain of each column], [y domain of each row, row 0 on top]): make_subplots' layout of an n_rows x
    n_cols grid with (horizontal, vertical) `spacing` (tests/unit/test_viz_grid.py compares them)."""
    hs, vs = spacing
    w = (1 - hs * (n_cols - 1)) / n_cols
    h = (1 - vs * (n_rows - 1)) / n_rows
    fit = lambda a, b: [min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)]  # noqa: E731 (float sums can leave [0, 1])
    xs = [fit(j * (w + hs), j * (w + hs) + w) for j in range(n_cols)]
    ys = [fit(1 - i * (h + vs) - h, 1 - i * (h + vs)) for i in range(n_rows)]
    return xs, ys


def perturbation_curves(curves: dict[str, dict], title: str = "") -> go.Figure:
    """Deletion / insertion curves (`workbench.explain.perturbation_curve` results) with their AUC in
    the legend; a curve's random-order reference, if it has one, is drawn dashed in its colour."""
    palette = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d"]
    fig = go.Figure()
    several = sum("random_scores" in c for c in curves.values()) > 1
    for k, (name, c) in enumerate(curves.items()):
        colour = palette[k % len(palette)]
        fig.add_scatter(
            x=c["fractions"],
            y=c["scores"],
            mode="lines+markers",
            name=f"{name} (AUC {c['auc']:.3f})",
            line_color=colour,
        )
        if "random_scores" in c:
            fig.add_scatter(
                x=c["fractions"],
                y=c["random_scores"],
                mode="lines",
                name=f"{name + ': ' if several else ''}random order (AUC {c['random_auc']:.3f})",
                line=dict(color=colour if several else "#888888", dash="dash"),
            )
    modes = {c.get("mode", "deletion") for c in curves.values()}
    verb = "deleted" if modes == {"deletion"} else "inserted" if modes == {"insertion"} else "changed"
    fig.update_layout(
        title=title,
        xaxis=dict(title=f"fraction of patches {verb} (most relevant first)", range=[0, 1]),
        yaxis=dict(title="probability of the answer", range=[0, 1.02]),
        height=380,
        width=720,
    )
    return fig


def confusion_matrix_figure(
    matrix: np.ndarray, labels: list[str], title: str = "", normalise: bool = False
) -> go.Figure:
    """Rows: the gold answer; columns: the predicted one. `normalise` divides each row by its total."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(labels), len(labels)):
        raise ValueError(f"a {len(labels)}-label confusion matrix must be square of that size, got {m.shape}")
    z = m / np.maximum(m.sum(1, keepdims=True), 1) if normalise else m
    text = [[f"{v:.2f}" if normalise else f"{int(v)}" for v in r] for r in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(labels),
            y=list(labels),
            colorscale="Blues",
            text=text,
            texttemplate="%{text}",
            hovertemplate="gold %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_xaxes(title="predicted", side="top", type="category")
    fig.update_yaxes(title="gold", autorange="reversed", type="category")
    size = 140 + 34 * len(labels)
    fig.update_layout(title=title, height=size + 60, width=size + 120, margin=dict(t=110))
    return fig


def accuracy_by_type_bar(per_type: dict[str, dict], models: tuple[str, ...] = ("teacher", "student")) -> go.Figure:
    """Grouped bars of accuracy per question type: {qtype: {"teacher": acc, "student": acc, "n"}}."""
    types = list(per_type)
    fig = go.Figure()
    for name in models:
        acc = [per_type[t][name] for t in types]
        fig.add_bar(x=types, y=acc, name=name, text=[f"{a:.0%}" for a in acc], textposition="auto")
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="accuracy"), height=360)
    return fig


def experiment_grid_bars(results: dict, title: str = "") -> go.Figure:
    """An experiment's results file (`assets/results/mad.json` "results": {task: {setting: {row: {"seeds",
    "accuracy": {"mean", "std"}}}}}) as one panel per task: test accuracy per setting, one bar per row with
    the seed spread (sample std) as error bar. Rows without runs get no bar, so a partly run grid shows as such."""
    tasks = list(results)
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, shared_yaxes=True)
    rows = list(dict.fromkeys(r for t in tasks for s in results[t].values() for r in s))
    colours = dict(zip(rows, ("#9d9da1", "#f58518", "#4c78a8", "#54a24b", "#b279a2", "#e45756")))
    for col, task in enumerate(tasks, start=1):
        settings = list(results[task])
        for row in rows:
            cells = [results[task][s].get(row, {}) for s in settings]
            acc = [c["accuracy"]["mean"] if c.get("seeds") else None for c in cells]
            std = [(c["accuracy"]["std"] or 0.0) if c.get("seeds") else None for c in cells]
            hover = [
                f"{row}, {s}: {a:.1%} ± {e:.1%} ({len(c['seeds'])} seeds)" if a is not None else f"{row}, {s}: not run"
                for s, c, a, e in zip(settings, cells, acc, std)
            ]
            fig.add_bar(
                x=settings,
                y=acc,
                error_y=dict(type="data", array=std),
                name=row,
                legendgroup=row,
                showlegend=col == 1,
                marker_color=colours.get(row),
                hovertext=hover,
                hoverinfo="text",
                row=1,
                col=col,
            )
    fig.update_layout(barmode="group", title=title, height=380, legend=dict(orientation="h", y=-0.15))
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="test accuracy", row=1, col=1)
    return fig


SPEED_COLOURS = {"teacher": "#e45756", "student": "#4c78a8", "student_cached": "#54a24b"}
# one colour per model wherever the app draws one (answers, speed, accuracy); "agree": both models at once
MODEL_COLOURS = {**SPEED_COLOURS, "agree": "#9d9da1"}


def speed_bars(results: dict) -> go.Figure:
    """A `workbench.bench.benchmark_pair` result as three panels: per-query latency at batch 1,
    throughput per batch size (log scale), and retrieval time against gallery size (log-log;
    extrapolated teacher times drawn dashed with open markers)."""
    paths = results["paths"]
    sizes = [str(b) for b in results["settings"]["batch_sizes"]]
    entries = results.get("retrieval", {}).get("entries", [])
    titles = [f"latency per query, batch {sizes[0]}", "throughput (log scale)"]
    titles += ["retrieval N images x N texts (log-log)"] if entries else []
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.09)
    for name, path in paths.items():
        colour = SPEED_COLOURS.get(name)
        first = path["batches"][sizes[0]]
        fig.add_bar(
            x=[path["label"]],
            y=[first["per_example_ms"]],
            error_y=dict(type="data", array=[1000 * first["iqr_s"] / first["batch_size"]]),
            text=[f"{first['per_example_ms']:.2f} ms"],
            textposition="auto",
            marker_color=colour,
            name=path["label"],
            legendgroup=name,
            row=1,
            col=1,
        )
        fig.add_bar(
            x=[f"batch {b}" for b in sizes],
            y=[path["batches"][b]["throughput_per_s"] for b in sizes],
            marker_color=colour,
            name=path["label"],
            legendgroup=name,
            showlegend=False,
            hovertemplate="%{x}: %{y:,.0f} examples/s<extra>" + path["label"] + "</extra>",
            row=1,
            col=2,
        )
    if entries:
        for side, colour in (("teacher", SPEED_COLOURS["teacher"]), ("student", SPEED_COLOURS["student"])):
            label = "teacher: N² joint passes" if side == "teacher" else "student: 2N encodings + matmul"
            for extrapolated in (False, True):
                points = [e for e in entries if e[side]["extrapolated"] == extrapolated]
                if extrapolated and points:  # join the dashed part to the last measured point
                    points = [e for e in entries if not e[side]["extrapolated"]][-1:] + points
                if not points:
                    continue
                fig.add_scatter(
                    x=[e["n_images"] for e in points],
                    y=[e[side]["median_s"] for e in points],
                    mode="lines+markers",
                    line=dict(color=colour, dash="dash" if extrapolated else "solid"),
                    marker=dict(symbol="circle-open" if extrapolated else "circle", size=9),
                    name=label + (" (extrapolated)" if extrapolated else ""),
                    hovertemplate="N=%{x}: %{y:.3g} s<extra></extra>",
                    row=1,
                    col=3,
                )
        fig.update_xaxes(type="log", title="N", row=1, col=3)
        fig.update_yaxes(type="log", title="seconds", row=1, col=3)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(title="ms per query", row=1, col=1)
    fig.update_yaxes(type="log", title="examples / s", row=1, col=2)
    m = results.get("machine", {})
    fig.update_layout(
        title=f"teacher vs student speed — {m.get('cpu', '?')}, {m.get('threads', '?')} thread(s)",
        barmode="group",
        height=420,
        width=420 * len(titles),
        legend=dict(orientation="h", y=-0.15),
        margin=dict(l=10, r=10, t=70, b=10),
    )
    return fig


RETRIEVAL_STAGES = {  # timings key -> (label, colour)
    "index": ("index build (once)", "#9d9d9d"),
    "encode": ("query: encode text", SPEED_COLOURS["student"]),
    "search": ("query: search index", SPEED_COLOURS["student_cached"]),
    "rerank": ("query: fusion re-rank", SPEED_COLOURS["teacher"]),
}


def retrieval_timings(timings_ms: dict[str, float], title: str = "retrieval timings") -> go.Figure:
    """Horizontal bars of a text->image search's stages in ms (log scale: building the index once
    costs orders of magnitude more than a query): keys "index", "encode", "search", "rerank" (others
    are drawn grey under their own name); stages absent from `timings_ms` are left out."""
    if not timings_ms:
        raise ValueError("no timings to draw")
    names = [k for k in RETRIEVAL_STAGES if k in timings_ms] + [k for k in timings_ms if k not in RETRIEVAL_STAGES]
    labels = [RETRIEVAL_STAGES.get(k, (k, ""))[0] for k in names][::-1]
    values = [float(timings_ms[k]) for k in names][::-1]
    colours = [RETRIEVAL_STAGES.get(k, ("", "#bab0ac"))[1] for k in names][::-1]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colours,
            text=[f"{v:.3g} ms" if v < 1000 else f"{v / 1000:.3g} s" for v in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.4g} ms<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis=dict(type="log", title="milliseconds (log scale)"),
        height=90 + 45 * len(values),
        margin=dict(l=10, r=10, t=50, b=40),
    )
    return fig


def width_curve_figure(curve: dict) -> go.Figure:
    """The measured speed-up of the cached student over the teacher against model width (log x), its range
    over the interleaved rounds as error bars, beside the FLOP ratio and, on the right axis, the share of the
    FLOP ratio reached: small models are bound by per-operator overhead, large ones by arithmetic.
    `curve`: `speed.json`'s "width_curve" (`workbench bench --width-curve`)."""
    points = curve["points"]
    if not points:
        raise ValueError("the width curve has no points")
    widths = [p["width"] for p in points]
    speedups = [p["speedup"] for p in points]
    low, high = zip(*(p["speedup_range"] for p in points), strict=True)
    errors = dict(type="data", symmetric=False, array=[h - s for h, s in zip(high, speedups, strict=True)],
                  arrayminus=[s - lo for s, lo in zip(speedups, low, strict=True)])  # fmt: skip
    share = [p["speedup"] / p["flop_ratio"] for p in points]
    fig = go.Figure()
    fig.add_scatter(x=widths, y=speedups, mode="lines+markers", name="measured speed-up", error_y=errors,
                    line=dict(color=SPEED_COLOURS["student_cached"]))  # fmt: skip
    fig.add_scatter(x=widths, y=[p["flop_ratio"] for p in points], mode="lines+markers", name="FLOP ratio",
                    line=dict(dash="dash"))  # fmt: skip
    fig.add_scatter(x=widths, y=share, mode="lines+markers", name="share of the FLOP ratio reached", yaxis="y2")
    fig.update_layout(
        title=f"cached student vs teacher, batch 1 ({curve['label']})",
        xaxis=dict(title="model width", type="log"),
        yaxis=dict(title="teacher time / student time"),
        yaxis2=dict(overlaying="y", side="right", range=[0, 1], tickformat=".0%", showgrid=False),
        height=380,
    )
    return fig
