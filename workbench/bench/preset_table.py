"""Markdown of a `--preset` run (`workbench.bench.paper.benchmark_preset`) and of the width curve: every table
says "speed only: untrained weights"."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.bench.preset import UNTRAINED
from workbench.models.io import write_json_atomic

RUNTIME_NAMES = {"eager": "eager", "bf16": "eager bf16", "compile": "torch.compile", "onnx": "ONNX Runtime"}


def merge_speed_section(path: str | Path, section: str, value: dict) -> Path:
    """Write `value` as section `section` of the JSON file at `path`, keeping its other sections (atomically)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return path


def _range(r: list[float]) -> str:
    return f"{r[0]:.1f}-{r[1]:.1f}"


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:,.0f} s"


def _student_rows(s_name: str, entry: dict) -> list[str]:
    rows = []
    for b, row in entry["best"].items():
        cells = [f"{row['teacher_ms']:.3g} ({RUNTIME_NAMES[row['teacher_runtime']]})"]
        for path in ("student", "student_cached"):
            c = row[path]
            cells.append(
                f"{c['ms']:.3g} ({RUNTIME_NAMES[c['runtime']]}): {c['speedup']:.1f}x [{_range(c['speedup_range'])}], "
                f"FLOP ratio {c['flop_ratio']:.1f}x, {c['fraction_of_flop_ratio']:.0%} of it"
            )
        rows.append(f"| {s_name} | {b} | " + " | ".join(cells) + " |")
    return rows


def _failures(entry: dict) -> list[str]:
    return [f"{RUNTIME_NAMES[rt]}: not measured ({r['error']})" for rt, r in entry["runs"].items() if "error" in r]


def _limit(entry: dict) -> str:
    """What holds the batch-1 ratio down: the cached path's arithmetic rate against the teacher's."""
    row = entry["best"].get("1", {}).get("student_cached")
    if not row:
        return ""
    return (f" What limits it: at batch 1 the cached student computes at {row['fraction_of_flop_ratio']:.0%} of "
            "the teacher's FLOP/s (short text sequences: small matrix products, where fixed per-operator overhead "
            "and memory traffic for the weights take a larger share than in the teacher's long joint "
            "sequence).")  # fmt: skip


def _targets(s_name: str, entry: dict) -> str:
    targets = entry["targets"]
    b1, frac = targets["cached_speedup_batch_1"], targets["fraction_of_flop_ratio_batch_32"]

    def verdict(t: dict, fmt: str) -> str:
        if t["measured"] is None:
            return "not measured"
        met = {True: "met", False: "NOT met", None: "not checked (other batch sizes)"}[t["met"]]
        return f"{met} (measured {fmt.format(t['measured'])})"

    return (f"{s_name}: cached student >= {b1['target']:.0f}x the teacher at batch 1 (best runtimes): "
            f"{verdict(b1, '{:.1f}x')}; largest batch (target at 32) >= {frac['target']:.0%} of the FLOP ratio: "
            f"{verdict(frac, '{:.0%}')}." + (_limit(entry) if b1["met"] is False else ""))  # fmt: skip


def _coco_line(s_name: str, c: dict) -> str:
    s, t = c["student"], c["teacher"]
    return (f"| COCO-5k retrieval ({c['n_images']:,} images x {c['n_texts']:,} captions), {s_name} | "
            f"{t['passes'] / 1e6:.0f} M joint passes: {_duration(t['total_s'])} (extrapolated from "
            f"{1000 * t['per_pair_s']:.3g} ms / pair) | encode {_duration(s['encode_images_s'] + s['encode_texts_s'])} "
            f"(extrapolated from a timed sample) + index {s['index_s']:.2f} s + search {s['search_s']:.2f} s "
            f"(measured, {c['ranker']}) = {_duration(s['total_s'])} | "
            f"{c['speedup']:,.0f}x (extrapolated) |")  # fmt: skip


def preset_table(section: dict) -> str:
    """Markdown of a preset run: best-runtime times and ratios per student and batch, targets, COCO-5k, load."""
    size = section["size"]
    runs = [r for e in section["students"].values() for r in e["runs"].values() if "machine" in r]
    where = f"{runs[0]['machine']['cpu']}, {runs[0]['machine']['threads']} thread(s), " if runs else ""
    lines = [
        f"**{section['preset']}, {UNTRAINED}** ({size['hidden_size']} wide, {size['num_layers']} layers, "
        f"{size['num_heads']} heads, {size['patch_size']}-px patches at {size['image_size']} px; synthetic inputs; "
        f"{where}{runs[0]['created'][:10] if runs else ''}). ms / example, each path in its fastest runtime; "
        "speed-up = median of interleaved rounds [range].",
        "",
        "| student | batch | teacher ms | student end to end | student, image features cached |",
        "|---|---:|---:|---|---|",
    ]
    ran = {rt for e in section["students"].values() for rt in e["runs"]}
    notes = list(section.get("notes", []))  # what the person who ran it had to say (machine conditions)
    notes += [f"{RUNTIME_NAMES[rt]}: not run at this size ({section.get('not_run', {}).get(rt, 'not requested')})"
              for rt in RUNTIME_NAMES if rt not in ran]  # fmt: skip
    for s_name, entry in section["students"].items():
        lines += _student_rows(s_name, entry)
        notes += [f"{s_name}: {f}" for f in _failures(entry)] + [_targets(s_name, entry)]
    cocos = [(s, e["coco5k"]) for s, e in section["students"].items() if "coco5k" in e]
    if cocos:
        lines += ["", "| retrieval | teacher | student | speed-up |", "|---|---:|---:|---:|"]
        lines += [_coco_line(s, c) for s, c in cocos]
    loads = [x for x in section.get("invocations", [section.get("load_average")]) if x and x.get("before")]
    if loads:
        spans = ", ".join(f"{x['before']['1min']} before / {(x.get('after') or {}).get('1min')} after" for x in loads)
        notes.append(f"Load average (1 min, /proc/loadavg) of the run(s): {spans}; 2 cores shared with other work.")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def width_table(curve: dict) -> str:
    """Markdown of the width curve (`workbench.bench.width.width_curve`)."""
    s = curve["settings"]
    lines = [
        f"Cached student against teacher, {UNTRAINED}: {s['layers']} layers, batch 1, {s['runtime']}, "
        f"{s['threads']} thread(s), median of {s['rounds']} interleaved rounds [range].",
        "",
        "| width | teacher ms | cached student ms | speed-up | FLOP ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in curve["points"]:
        lines.append(f"| {p['width']} | {p['teacher_ms']:.3f} | {p['cached_ms']:.3f} | {p['speedup']:.1f}x "
                     f"[{_range(p['speedup_range'])}] | {p['flop_ratio']:.1f}x |")  # fmt: skip
    return "\n".join(lines)
