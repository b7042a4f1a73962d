"""The arithmetic an inference runs in: fp32, or bf16 autocast (matrix products in bfloat16, softmax, layer norm
and reductions kept in float32 by torch's autocast lists).

`auto` chooses bf16 only where it pays and the hardware computes it natively: a model of at least
`AUTO_MIN_PARAMS` parameters (a ViLT-B/32-sized model has about 110 M; the shipped models about 1 M, where
per-operator overhead, not arithmetic, decides the time) on a GPU with bf16 or a CPU whose oneDNN has bf16
instructions (AVX-512 BF16 or AMX BF16; oneDNN's bf16 on other AVX-512 CPUs converts to fp32 and is slower than
fp32). Measured on this project's CPU at ViLT-B/32 size: a forward pass 0.21 s in fp32,
0.065 s under bf16 autocast (docs/results.md). Maps and probabilities then differ from fp32 in the third
significant digit; `fp32` gives the exact ones.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
AUTO_MIN_PARAMS = 20_000_000


def _device_type(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


# the CPU instructions that compute bf16 products natively; oneDNN also "supports" bf16 on any AVX-512 CPU by
# converting to fp32, which is slower than fp32 itself (an Intel Xeon with AVX-512 but no AVX-512 BF16, measured
# 2026-12-03: a 185 x 768 by 768 x 3072 product took 12 ms in fp32 and 38 ms in bf16)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_native(device_type: str) -> bool:
    """Whether `device_type` ("cpu", "cuda") runs bf16 matrix products in hardware."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return cpu_has_bf16_instructions(_cpu_capabilities()) and _onednn_bf16()
    return False


def cpu_has_bf16_instructions(capabilities: dict) -> bool:
    return any(capabilities.get(flag) for flag in CPU_BF16_FLAGS)


def _cpu_capabilities() -> dict:
    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # an older torch: no way to tell, so no bf16
        return {}


def _onednn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_precision(precision: str, model: nn.Module) -> str:
    """ "fp32" or "bf16": `precision` itself, or for "auto" the choice described in the module docstring."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if is_large(model) and bf16_native(_device_type(model)) else "fp32"


def is_large(model: nn.Module) -> bool:
    """At least `AUTO_MIN_PARAMS` parameters: arithmetic, not per-operator overhead, decides its time."""
    return sum(p.numel() for p in model.parameters()) >= AUTO_MIN_PARAMS


@contextmanager
def inference_precision(model: nn.Module, precision: str = "auto"):
    """Run the body in `model`'s resolved precision; yields "fp32" or "bf16"."""
    chosen = resolve_precision(precision, model)
    with torch.autocast(_device_type(model), dtype=torch.bfloat16, enabled=chosen == "bf16"):
        yield chosen
