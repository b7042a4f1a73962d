"""All explanations of one (image, question) for one or more models, as figures and a summary:
what `workbench explain` writes. Plain functions, so the app and the notebooks can reuse them.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import torch

from workbench import viz
from workbench.explain.agreement import map_agreement
from workbench.explain.attention import patch_words, word_map
from workbench.explain.curves import DEFAULT_STEPS
from workbench.explain.faithfulness import perturbation_curves
from workbench.explain.grid import cell_of
from workbench.explain.inputs import encode, masked
from workbench.explain.maps import METHODS, explain
from workbench.inputs import read_image
from workbench.models.precision import inference_precision, resolve_precision

TITLES = {
    "attention": "text-to-image attention (question words, heads averaged)",
    "rollout": "attention rollout (share of the image part)",
    "relevancy": "gradient-weighted relevancy (share of the image part)",
    "ig": "Integrated Gradients on patch embeddings (share of |attribution|)",
}


def _share(m: np.ndarray) -> np.ndarray:
    scale = np.abs(m).sum()
    return m / scale if scale > 0 else m


def default_word(tokens: list[str]) -> int:
    """The question's last real word (not [CLS]/[SEP]/punctuation): usually the object asked about."""
    for i in range(len(tokens) - 2, 0, -1):
        if any(ch.isalnum() for ch in tokens[i]):
            return i
    return 0


def explain_models(
    models: dict,
    image,
    question: str,
    methods: tuple[str, ...] = METHODS,
    word: str | None = None,
    layer: int = -1,
    baseline: str | float = "mean",
    ig_steps: int = 16,
    random_orders: int = 2,
    second_image=None,
    curve_steps: int | str = DEFAULT_STEPS,
    precision: str = "auto",
) -> dict:
    """Explain `question` about `image` (and `second_image`, for two-image NLVR models; the maps are of the first
    image) for each named `Checkpoint` in `models` (e.g. {"teacher": ..., "student": ...}). Returns {"summary":
    plain data, "figures": {name: plotly figure}}. `curve_steps`: the points of the deletion / insertion curves
    (10: every 10% of the patches; "patch": every patch). The summary records each model's seconds per method
    (its map and its curves) and the precision each ran in (`workbench.models.precision`: "auto" is bf16 autocast
    for a large model on hardware with native bf16, fp32 otherwise)."""
    image = read_image(image)
    second = read_image(second_image) if second_image is not None else None
    results, summary = {}, {"question": question, "methods": list(methods), "models": {}}
    for name, ck in models.items():
        results[name] = _explain_one(
            ck, (image, second), question, methods, layer, baseline, ig_steps, random_orders, curve_steps, precision
        )
        summary["models"][name] = _model_summary(ck, results[name], methods)
    figures = _method_figures(results, methods, question, image)
    names = list(results)
    if len(names) > 1:
        summary["agreement"] = {
            m: map_agreement(results[names[0]]["res"][m]["image"], results[n]["res"][m]["image"])
            for m in methods
            for n in names[1:]
        }
    if "attention" in methods:
        figures.update(_attention_figures(results, word, layer, image, summary))
    if "relevancy" in methods:
        figures["words-relevancy"] = viz.word_strip(
            results[names[0]]["res"]["relevancy"]["tokens"],
            {n: _share(results[n]["res"]["relevancy"]["text"]) for n in names},
            title="relevancy of each token to the answer (share)", zlabel="share",
        )  # fmt: skip
    for n in names:
        for mode in ("deletion", "insertion"):
            figures[f"{mode}-{n}"] = viz.perturbation_curves(
                {m: results[n]["curves"][(m, mode)] for m in methods},
                title=f"{n}: {mode} curves ({'lower' if mode == 'deletion' else 'higher'} AUC = more faithful)",
            )
    return {"summary": summary, "figures": figures}


def _explain_one(
    ck,
    images,
    question: str,
    methods,
    layer: int,
    baseline,
    ig_steps: int,
    random_orders: int,
    curve_steps=DEFAULT_STEPS,
    precision: str = "auto",
) -> dict:
    """One model's maps, answer and deletion / insertion curves: {"batch", "res", "curves", "answer", "probs",
    "seconds": {method: {"map", "curves"}}, "precision"}. Random-order curves (the chance baseline) are drawn with
    the first method's. `images`: (image, second image or None). `precision` applies to the many forward passes
    (the curves, Integrated Gradients' path); the answer and the attention, rollout and relevancy maps (one pass
    each) are always computed in fp32."""
    # the image as the checkpoint reads it: a HF ViLT folder (and its students) keeps the aspect ratio
    batch = encode(ck.model, ck.tokenizer, images[0], question, images[1], image_pipeline=ck.image_pipeline)
    with torch.no_grad():
        logits = ck.model(batch.input_ids, batch.attention_mask, batch.pixel_values, **masked(batch)).logits[0].float()
    probs = logits.softmax(-1)
    answer = int(probs.argmax())
    res, curves, seconds, ends = {}, {}, {}, {}  # `ends`: the intact and all-baseline images' probabilities
    chosen = resolve_precision(precision, ck.model)  # once: "auto" looks at the model and the hardware
    for k, m in enumerate(methods):
        start = time.perf_counter()
        with inference_precision(ck.model, chosen if m == "ig" else "fp32"):
            res[m] = explain(ck.model, batch, ck.tokenizer, (m,), layer=layer, ig_steps=ig_steps, baseline=baseline)[m]
        mid = time.perf_counter()
        with inference_precision(ck.model, chosen):
            found = perturbation_curves(
                ck.model, batch, {m: res[m]["image"]}, target=answer, baseline=baseline,
                random_orders=random_orders if k == 0 else 0, steps=curve_steps, ends=ends,
            )  # fmt: skip
        for mode in ("deletion", "insertion"):
            curves[(m, mode)] = found[(m, mode)]
            if ("random", mode) in found:  # the chance baseline rides on the first method's curves
                curves[(m, mode)]["random_scores"] = found[("random", mode)]["scores"]
                curves[(m, mode)]["random_auc"] = found[("random", mode)]["auc"]
        seconds[m] = {"map": mid - start, "curves": time.perf_counter() - mid}
    return {"batch": batch, "res": res, "curves": curves, "answer": ck.labels[answer], "probs": probs,
            "seconds": seconds, "precision": chosen}  # fmt: skip


def _model_summary(ck, result: dict, methods) -> dict:
    """The plain-data part of one model's explanation (explain.json)."""
    res, curves, probs = result["res"], result["curves"], result["probs"]
    answer = int(probs.argmax())
    return {
        "checkpoint": str(ck.path),
        "kind": ck.meta["kind"],
        "answer": ck.labels[answer],
        "confidence": float(probs[answer]),
        "tokens": next(iter(res.values()))["tokens"],
        "faithfulness": {m: {mode: curves[(m, mode)]["auc"] for mode in ("deletion", "insertion")} for m in methods},
        "random": {mode: curves[(methods[0], mode)].get("random_auc") for mode in ("deletion", "insertion")},
        "maps": {m: res[m]["image"].tolist() for m in methods},
        "curve_steps": next(iter(curves.values()))["steps"],
        "seconds": {m: {k: round(v, 3) for k, v in t.items()} for m, t in result["seconds"].items()},
        "precision": result["precision"],
    }


def _method_figures(results: dict, methods, question: str, image) -> dict:
    """One figure per method: every model's image map side by side, on one colour scale."""
    figures = {}
    for m in methods:
        maps = {}
        for n, r in results.items():
            m_map = r["res"][m]["image"]
            maps[f"{n}: {r['answer']}"] = m_map if m == "attention" else _share(m_map)
        signed = m == "ig"
        figures[m] = viz.patch_maps_side_by_side(
            maps,
            title=f"{TITLES[m]}<br><sup>{html.escape(question)}</sup>",
            image=image,
            colorscale="RdBu_r" if signed else "Viridis",
            symmetric=signed,
            zlabel="attention" if m == "attention" else "share",
        )
    return figures


def _attention_figures(results: dict, word: str | None, layer: int, image, summary: dict) -> dict:
    """The raw-attention figures of one question word (`word`, default the last): its map per model, every
    layer and head, and image-to-text from the patch the first model's map points at. Adds "word" and "patch"
    to `summary`."""
    names = list(results)
    first = results[names[0]]["res"]["attention"]
    tokens = first["tokens"]
    w = tokens.index(word) if word in tokens else default_word(tokens)
    summary["word"] = tokens[w]
    figures = {}
    figures["word"] = viz.patch_maps_side_by_side(
        {n: word_map(results[n]["res"]["attention"]["cross"], w, layer) for n in names},
        title=f"'{tokens[w]}' → image (layer {layer}, heads averaged)", image=image,
    )  # fmt: skip
    for n in names:
        ca = results[n]["res"]["attention"]["cross"]
        figures[f"heads-{n}"] = viz.head_grid(
            ca["t2i"][:, :, w], title=f"{n}: '{tokens[w]}' → image, every layer and head", image=image
        )
    # image-to-text: the patch the teacher's word map points at, read back over the words
    row, col = cell_of(int(np.argmax(word_map(first["cross"], w, layer))), first["cross"]["grid"])
    summary["patch"] = [row, col]
    figures["patch-to-words"] = viz.word_strip(
        tokens,
        {n: patch_words(results[n]["res"]["attention"]["cross"], row, col, layer) for n in names},
        title=f"image-to-text: patch (row {row}, col {col}) → words (layer {layer}, heads averaged)",
    )
    return figures


def write_report(report: dict, out: str | Path, png: bool | None = None) -> list[Path]:
    """Write every figure as OUT/<name>.html (sharing OUT/plotly.min.js), all of them in the
    self-contained OUT/explain.html, the summary as
    OUT/explain.json, and PNGs when kaleido is installed (`png=None`: if available)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if png is None:
        try:
            import kaleido  # noqa: F401

            png = True
        except ImportError:
            png = False
    written, parts = [], []
    for k, (name, fig) in enumerate(report["figures"].items()):
        path = out / f"{name}.html"
        fig.write_html(path, include_plotlyjs="directory")  # one plotly.min.js beside them, offline
        written.append(path)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=k == 0))
        if png:
            try:
                fig.write_image(out / f"{name}.png")
                written.append(out / f"{name}.png")
            except Exception as e:  # noqa: BLE001 - kaleido needs a browser; HTML is enough without it
                print(f"PNG export skipped ({e.__class__.__name__}: {e})")
                png = False
    s = report["summary"]
    head = "".join(
        f"<li><b>{html.escape(n)}</b>: {html.escape(m['answer'])} ({m['confidence']:.1%})</li>"
        for n, m in s["models"].items()
    )
    page = (
        f"<html><head><meta charset='utf-8'><title>workbench explain</title></head><body>"
        f"<h2>{html.escape(s['question'])}</h2><ul>{head}</ul>{''.join(parts)}</body></html>"
    )
    (out / "explain.html").write_text(page)
    (out / "explain.json").write_text(json.dumps(s, indent=2))
    return [out / "explain.html", out / "explain.json", *written]
