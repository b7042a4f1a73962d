"""A benchmark result written out: the JSON file and the markdown tables docs/results.md and the app show."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.bench.latency import PATHS
from workbench.models.io import write_json_atomic

RUNTIME_LABELS = {
    "eager": "in eager PyTorch",
    "bf16": "in eager PyTorch under bf16 autocast",
    "compile": "`torch.compile`d",
    "onnx": "in ONNX Runtime (exported)",
}


# sections of the speed file other runs write (`workbench bench --preset` / `--width-curve`): a pair run keeps them
OTHER_SECTIONS = ("paper_scale", "width_curve")


def write_speed(results: dict, path: str | Path = "assets/results/speed.json") -> Path:
    """Write benchmark results as JSON, atomically (readers never see half a file), keeping the file's
    `OTHER_SECTIONS`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    kept = {k: old[k] for k in OTHER_SECTIONS if k in old and k not in results}
    write_json_atomic(path, {**results, **kept})
    return path


def _fmt_time(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.3g} ms"


def _mark(entry: dict) -> str:
    return " (extrapolated)" if entry["extrapolated"] else ""


def _paths_table(results: dict) -> list[str]:
    paths, ratios = results["paths"], results["ratios"]
    sizes = results["settings"]["batch_sizes"]
    lines = [
        f"| path | params | GFLOP / example (batch {sizes[-1]}) | "
        + " | ".join(f"batch {b}: ms / example" for b in sizes)
        + " |",
        "|---|---:|---:|" + "---:|" * len(sizes),
    ]
    for name in PATHS:
        p = paths[name]
        flops = p["batches"][str(sizes[-1])]["flops_per_example"] / 1e9
        cells = []
        for b in sizes:
            c = p["batches"][str(b)]
            cell = f"{c['per_example_ms']:.3f}"
            if name != "teacher":
                r = ratios[str(b)]
                lo_hi = r.get(f"{name}_speedup_range")
                span = f" [{lo_hi[0]:.1f}-{lo_hi[1]:.1f}]" if lo_hi else ""
                cell += f" ({r[f'{name}_speedup']:.1f}x{span}; FLOP ratio {r[f'{name}_flop_ratio']:.1f}x)"
            cells.append(cell)
        lines.append(f"| {p['label']} | {p['parameters'] / 1e6:.2f} M | {flops:.4f} | " + " | ".join(cells) + " |")
    return lines


def _retrieval_table(results: dict) -> list[str]:
    entries = results["retrieval"]["entries"]
    if not entries:
        return []
    lines = [
        "",
        "| retrieval | teacher (N x N joint passes) | student (2N encodings + matmul) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for e in entries:
        t, s = (_fmt_time(e[x]["median_s"]) + _mark(e[x]) for x in ("teacher", "student"))
        lines.append(f"| {e['n_images']} x {e['n_texts']} | {t} | {s} | {e['speedup']:,.0f}x{_mark(e)} |")
    return lines


def speed_table(results: dict) -> str:
    """Markdown tables of a `benchmark_pair` result (per-example latency / throughput, retrieval, machine), then
    the paper-scale section and the width curve when the file has them."""
    from workbench.bench.preset_table import preset_table, width_table

    m = results["machine"]
    runtime = results["settings"].get("runtime", "compile" if results["settings"].get("compiled") else "eager")
    rounds = results["settings"].get("rounds")
    timing = "median of timed blocks"
    if rounds:
        timing = f"median of {rounds} interleaved rounds [range of the rounds' ratios]"
    load = m.get("load_average_1min_at_start")
    timing += f"; load average {load} at the start" if load is not None else ""
    machine = [
        "",
        f"Measured on {m['cpu']} ({m['threads']} thread(s), {m['device']}), torch {m['torch']}, "
        f"{results['created']}; both models run {RUNTIME_LABELS[runtime]}; {timing}, FLOPs from "
        "`torch.utils.flop_counter`.",
    ]
    extra = []
    if "paper_scale" in results:
        extra += ["", "Paper scale:", "", preset_table(results["paper_scale"])]
    if "width_curve" in results:
        extra += ["", "Speed-up against model width:", "", width_table(results["width_curve"])]
    return "\n".join(_paths_table(results) + _retrieval_table(results) + machine + extra)
