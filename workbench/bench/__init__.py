"""How fast the dual student is next to its fusion teacher, measured.

`benchmark_pair(teacher, student)` times three inference paths with `torch.utils.benchmark`
(warm-up, fixed thread count, median and interquartile range over timed blocks):

* ``teacher``: the fusion model, one joint pass over ``T + images * (1 + P)`` tokens per query;
* ``student``: the dual student end to end (image tower + text tower + fusion head);
* ``student_cached``: the student with the image features already computed (text tower + head),
  the case of many questions about one image, or of a gallery encoded ahead of time.

Beside each time stand the arithmetic (FLOPs per example from `torch.utils.flop_counter`, counted
on the eager attention path because the counter does not see the fused CPU attention kernel; the
arithmetic is the same), the parameters the path touches per query, and its peak memory.

Retrieval over N images x N texts: the teacher must run one joint pass per pair (N^2); the
student encodes every image and every text once and ranks with one matrix product of its
retrieval embeddings. Teacher runs predicted to exceed `budget_s` are not run: their time is
extrapolated from the per-pair cost measured at the largest N that was run, and marked
``"extrapolated": true`` with the basis. The smallest N is always measured.

Peak memory: see `workbench.bench.measure`.

All model calls run under `torch.inference_mode()`, with fused (SDPA) attention in both models
(`attn_implementation = "sdpa"` for the run: the teacher's own fused path, HF's for the towers).
`runtime="compile"` times `torch.compile`d models; `runtime="onnx"` times both models exported to ONNX
Runtime (`workbench.onnx_runtime`), whose lower per-operator overhead is what decides batch 1 (docs/results.md
"Speed": the cached student's call 0.105 ms there against 0.26-0.35 ms compiled).

Modules, one job each: `measure` (time, FLOPs, memory, machine), `pair` (checkpoints and their example
inputs), `latency` (the three paths, batch by batch), `retrieval_speed` (N x N ranking), `run`
(`benchmark_pair`), `table` (JSON file and markdown tables), `preset` (a size preset's models, random weights),
`paper` (`benchmark_preset`: every student and runtime of a preset, best-runtime ratios, targets), `coco` (retrieval
at COCO-5k scale), `width` (the ratio against model width), `preset_table` (their markdown).
"""

from workbench.bench.latency import PATH_LABELS, PATHS, path_parameters
from workbench.bench.measure import attention_mode, count_flops, machine_info, peak_memory
from workbench.bench.pair import FALLBACK_TEXTS
from workbench.bench.preset import UNTRAINED, preset_checkpoints, preset_models, preset_names
from workbench.bench.preset_table import merge_speed_section, preset_table, width_table
from workbench.bench.run import FORMAT_VERSION, QUICK, RUNTIMES, benchmark_pair
from workbench.bench.table import RUNTIME_LABELS, speed_table, write_speed

__all__ = [
    "FALLBACK_TEXTS",
    "FORMAT_VERSION",
    "PATHS",
    "PATH_LABELS",
    "QUICK",
    "RUNTIMES",
    "RUNTIME_LABELS",
    "attention_mode",
    "benchmark_pair",
    "count_flops",
    "machine_info",
    "path_parameters",
    "peak_memory",
    "speed_table",
    "write_speed",
    "UNTRAINED",
    "merge_speed_section",
    "preset_checkpoints",
    "preset_models",
    "preset_names",
    "preset_table",
    "width_table",
]
