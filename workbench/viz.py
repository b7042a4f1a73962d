"""Plotly figures: the one place figures are made. The app and the notebooks call these."""

from __future__ import annotations

import plotly.graph_objects as go


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
