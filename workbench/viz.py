"""Plotly figures: the one place figures are made. The app and the notebooks call these."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


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


def patch_maps_side_by_side(
    maps: dict[str, np.ndarray], title: str = "", colorscale: str = "Viridis", zlabel: str = "attention"
) -> go.Figure:
    """One heatmap per named 2-D map (e.g. a word's attention over the patch grid), side by side.

    All panels share one colour scale (zmin/zmax are the global min/max) and one colour bar, so the
    same colour means the same value everywhere; grid row 0 is drawn at the top, as in the image.
    """
    if not maps:
        raise ValueError("no maps to draw")
    arrays = {name: np.asarray(m, dtype=float) for name, m in maps.items()}
    for name, m in arrays.items():
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"map {name!r} must be a non-empty 2-D array, got shape {m.shape}")
    zmin = min(float(m.min()) for m in arrays.values())
    zmax = max(float(m.max()) for m in arrays.values())
    n = len(arrays)
    fig = make_subplots(rows=1, cols=n, subplot_titles=list(arrays), horizontal_spacing=0.06)
    for col, m in enumerate(arrays.values(), start=1):
        fig.add_trace(
            go.Heatmap(
                z=m,
                zmin=zmin,
                zmax=zmax,
                colorscale=colorscale,
                showscale=col == n,
                colorbar=dict(title=zlabel),
                hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(dtick=1, constrain="domain", row=1, col=col)
        anchor = "x" if col == 1 else f"x{col}"
        fig.update_yaxes(dtick=1, autorange="reversed", scaleanchor=anchor, row=1, col=col)
    fig.update_layout(title=title, height=320, width=260 * n + 120, margin=dict(l=10, r=10, t=70, b=10))
    return fig
