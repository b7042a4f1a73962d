"""Run one model call through ONNX Runtime: the lowest-overhead CPU path we have for the benchmark.

At batch 1 a query is a few dozen small kernels, so per-operator overhead, not arithmetic, sets the time
(docs/results.md "Speed"): eager PyTorch spends ~16 us per small matrix product. ONNX Runtime runs the same graph,
exported by `torch.onnx.export`, with less overhead per operator (the cached student's whole call: 0.105 ms,
against 0.26-0.35 ms compiled), so the measured ratio between two models comes closer to their FLOP ratio.
The benchmark exports *both* models this way (`runtime="onnx"`), so the comparison stays like for like.

Each export is for one fixed set of input shapes (like `torch.compile(dynamic=False)`): the benchmark
exports every (path, batch size) it times. The exported graph is checked against the eager call before
it is used (`check_atol`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from workbench.errors import WorkbenchError


class _Call(nn.Module):
    """`fn(model, *inputs)` as a module whose forward takes the inputs as flat tensors (what export traces)."""

    def __init__(self, model: nn.Module, fn: Callable):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.model, *inputs)


def _quiet():
    """The exporter reports each optimisation pass on stdout and in warnings; the benchmark's output is its table."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    for name in ("torch.onnx", "onnxscript", "onnx_ir"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


def onnx_call(
    model: nn.Module, fn: Callable, inputs: tuple[torch.Tensor, ...], threads: int = 1, check_atol: float = 1e-4
) -> Callable[[], object]:
    """Export `fn(model, *inputs)` (a tensor-returning call) for these input shapes, open it in ONNX Runtime on
    CPU with `threads` threads, check it gives the eager result within `check_atol`, and return a
    zero-argument callable that runs it on `inputs`."""
    if importlib.util.find_spec("onnxruntime") is None:  # pragma: no cover - a declared dependency
        raise WorkbenchError("runtime 'onnx' needs the onnxruntime package (pip install onnxruntime onnxscript)")
    if any(t.device.type != "cpu" for t in inputs):
        raise WorkbenchError("runtime 'onnx' runs on CPU; use runtime 'eager' or 'compile' on a GPU")
    names = [f"input_{i}" for i in range(len(inputs))]
    wrapped = _Call(model, fn).eval()
    with torch.inference_mode(False), torch.no_grad():
        # export traces outside inference mode, where tensors made inside it may not be used: plain copies
        inputs = tuple(t.clone() for t in inputs)
        expected = wrapped(*inputs)
        return _session(wrapped, inputs, names, expected, threads, check_atol)


def _session(wrapped: nn.Module, inputs, names, expected, threads: int, check_atol: float):
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with _quiet():
            torch.onnx.export(wrapped, tuple(inputs), path, input_names=names, output_names=["output"], dynamo=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # the exporter drops inputs the graph does not read (e.g. an all-ones mask folded away)
    wanted = {i.name for i in session.get_inputs()}
    feeds = {n: t.numpy() for n, t in zip(names, inputs) if n in wanted}
    got = torch.from_numpy(session.run(None, feeds)[0])
    if not torch.allclose(got, expected.float(), atol=check_atol, rtol=0):
        diff = (got - expected).abs().max().item()
        raise WorkbenchError(f"the ONNX export differs from the eager model by {diff:.2e} (> {check_atol})")
    return lambda: session.run(None, feeds)
