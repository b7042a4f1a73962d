"""The Speed tab: `workbench.bench.benchmark_pair` live on copies of the pair's models, with a progress
bar: per-query latency and throughput of the teacher, the student end to end and with its image
features cached, and retrieval over N images x N texts. Beside it, the shipped measurements
(assets/results/speed.json): the toy pair, and the paper-scale section (a ViLT-B/32-sized teacher against its
students, untrained weights, measured by `workbench bench --preset vilt-b32`; never measured live here: minutes).

Public endpoint: /speed."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from workbench import viz
from workbench.app.exports import speed_csv
from workbench.app.state import AppState, copy_checkpoint
from workbench.app.ui import endpoint, num_images, user_errors

# settings for `workbench.bench.benchmark_pair` by name ("quick": None, the bench's own QUICK)
BENCH_SETTINGS = {
    "quick": None,
    "standard": dict(batch_sizes=(1, 8, 32), retrieval_sizes=(10, 40, 160), min_run_time=0.2, budget_s=3.0),
}
# both models exported to ONNX Runtime (`workbench bench --runtime onnx`, the table in docs/results.md): lower per-call
# overhead, so batch 1 shows the dual encoder's advantage; exporting adds a few seconds per batch size
BENCH_SETTINGS["standard, ONNX Runtime"] = dict(BENCH_SETTINGS["standard"], runtime="onnx")
NO_STUDENT = "No student is shipped for this task yet: nothing to compare the teacher with."


def shipped_speed_markdown(path: str | Path | None = None) -> str:
    """The shipped speed file as Markdown: the toy pair's table, then the paper-scale section and the width curve
    (`workbench.bench.speed_table` reads both), with the machine and its load; a note when the file is missing."""
    from workbench.api import assets_dir
    from workbench.bench import speed_table

    path = Path(path) if path else assets_dir() / "results" / "speed.json"
    if not path.exists():
        return f"No shipped speed measurements ({path} is missing)."
    results = json.loads(path.read_text())
    m = results["machine"]
    pair = f"{results['models']['teacher']['path']} against {results['models']['student']['path']}"
    return (
        f"**Shipped measurements** (`{path.name}`; {m['cpu']}, {m['logical_cpus']} logical CPUs). Toy pair: {pair}.\n\n"
        + speed_table(results)
    )


class SpeedTab:
    """The Speed tab's components, callback and event. `settings`: benchmark settings by name; `message`: the
    page's message area."""

    def __init__(self, state: AppState, pair: gr.Dropdown, settings: dict | None = None, message=None):
        self.state, self.pair, self.message = state, pair, message
        self.settings = dict(settings or BENCH_SETTINGS)

    def layout(self) -> None:
        gr.Markdown(
            "Per-query latency (batch 1) and throughput of the teacher, the student end to end and the "
            "student with its image features cached, plus retrieval over N images x N texts; "
            "`torch.utils.benchmark` on copies of the models, in PyTorch or with both models exported to "
            "ONNX Runtime. Background work on the machine slows "
            "every path."
        )
        self.api = gr.Button(visible=False)  # the public endpoint's trigger (`ui.endpoint`): API clients only
        with gr.Row():
            self.choice = gr.Radio(list(self.settings), value="quick", label="settings", elem_id="settings")
            self.run_btn = gr.Button("Run benchmark", variant="primary", elem_id="run-speed")
        with gr.Row():
            with gr.Column(scale=3):
                self.plot = gr.Plot(label="speed (live)", elem_id="speed-plot")
                self.table = gr.Markdown(elem_id="speed-table")
                self.download = gr.File(label="the measurements (CSV)", height=80, elem_id="speed-download")
            with gr.Column(scale=2):  # read from the JSON, never measured here: the paper-scale run takes minutes
                gr.Markdown(shipped_speed_markdown(), elem_id="speed-shipped")

    def wire(self) -> None:
        outputs = [self.plot, self.table, self.download]
        events = [(self.run_btn.click, "speed_on_click")]
        cleared = (None, "", None)
        endpoint(self.speed, [self.pair, self.choice], outputs, "speed", self.api, events, self.message, cleared,
                 concurrency_limit=1)  # fmt: skip

    @user_errors
    def speed(self, pair_name: str, settings: str, progress=gr.Progress()):
        """`workbench.bench.benchmark_pair` on copies of the pair's models, with a progress bar."""
        from workbench.bench import PATHS, QUICK, benchmark_pair, speed_table

        teacher, student = self.state.pair(pair_name)
        if student is None:
            raise gr.Error(NO_STUDENT)
        if settings not in self.settings:
            raise gr.Error(f"Unknown settings {settings!r}; choose one of {list(self.settings)}.")
        cfg = dict(self.settings[settings] or QUICK)
        retrieval = len(cfg.get("retrieval_sizes", ())) if num_images(teacher) == 1 else 0
        total = len(PATHS) * len(cfg.get("batch_sizes", (1,))) + 2 * retrieval
        done = [0]

        def step(message: str) -> None:
            done[0] += 1
            progress((done[0], total), desc=message)

        progress(0, desc="copying the models and preparing inputs")
        result = benchmark_pair(copy_checkpoint(teacher), copy_checkpoint(student), progress=step, **cfg)
        load = result["machine"].get("load_average_1min_at_start")
        note = f"\n\nLoad average when the run started: {load} (other work on the machine slows every path)."
        fig = viz.speed_bars(result).update_layout(width=None, autosize=True)  # as wide as the tab
        table = speed_table(result) + (note if load is not None else "")
        return fig, table, speed_csv(self.state.exports, result)


def build(state: AppState, pair: gr.Dropdown, settings: dict | None = None, message=None) -> SpeedTab:
    """The Speed tab (inside the app's `gr.Tabs`), its components and event."""
    tab = SpeedTab(state, pair, settings, message)
    with gr.Tab("Speed", id="speed"):
        tab.layout()
    tab.wire()
    return tab
