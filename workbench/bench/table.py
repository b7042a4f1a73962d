"""A benchmark result written out: the JSON file and the markdown tables docs/results.md and the app show."""

from __future__ import annotations

from pathlib import Path

from workbench.bench.latency import PATHS
from workbench.models.io import write_json_atomic

RUNTIME_LABELS = {"eager": "in eager PyTorch", "compile": "`torch.compile`d", "onnx": "in ONNX Runtime (exported)"}


def write_speed(results: dict, path: str | Path = "assets/results/speed.json") -> Path:
    """Write benchmark results as JSON, atomically (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, results)
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
                cell += f" ({r[f'{name}_speedup']:.1f}x; FLOP ratio {r[f'{name}_flop_ratio']:.1f}x)"
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
    """Markdown tables of a `benchmark_pair` result (per-example latency / throughput, retrieval, machine)."""
    m = results["machine"]
    runtime = results["settings"].get("runtime", "compile" if results["settings"].get("compiled") else "eager")
    machine = [
        "",
        f"Measured on {m['cpu']} ({m['threads']} thread(s), {m['device']}), torch {m['torch']}, "
        f"{results['created']}; both models run {RUNTIME_LABELS[runtime]}; median of timed blocks, FLOPs from "
        "`torch.utils.flop_counter`.",
    ]
    return "\n".join(_paths_table(results) + _retrieval_table(results) + machine)
