"""The Errors tab: where teacher and student answer differently on the first `errors_n` examples of the
test split (`workbench.evaluate.compare_models`, computed on first use per pair, then kept); a row opens
its example in Ask or Attention.

A pair distilled on a real dataset (its student, or its teacher, records vqav2, snli-ve or nlvr2) is compared
on that dataset's test split read from disk, when the app is started with `--data-root` (`data_roots`: one
folder for every dataset, or one per name); each model reads the images as its checkpoint does.

Public endpoints: /errors, /open_example."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import gradio as gr

from workbench import viz
from workbench.app.ask import AskTab
from workbench.app.attention import AttentionTab
from workbench.app.state import AppState
from workbench.app.ui import ANALYSIS_QUEUE, PRIVATE, dataset_of, endpoint, shown, user_errors
from workbench.models.io import Checkpoint

ERRORS_N = 600  # test examples compared (100 per shapes question type)
ERROR_HEADERS = ["#", "type", "question", "gold", "teacher", "student", "attention KL"]
NO_STUDENT = "No student is shipped for this task yet: nothing to compare the teacher with."
CLEARED = ("", None, None, None, gr.update())  # the comparison after an error; the type filter kept
UNCHANGED = (gr.update(),) * 6  # an example that could not be opened leaves the inputs as they are


def accuracy_bars(per_type: dict[str, dict]):
    """Accuracy by question type, each model in its colour (`viz.MODEL_COLOURS`, as in Ask and Speed)."""
    fig = viz.accuracy_by_type_bar(per_type, models=("teacher", "student", "agree"))
    return fig.for_each_trace(lambda t: t.update(marker_color=viz.MODEL_COLOURS.get(t.name)))


def table_rows(rows: list[dict]) -> list[list]:
    """Compared examples (`workbench.evaluate.compare_models` rows) as rows under ERROR_HEADERS."""
    return [
        [
            r["index"],
            r["qtype"],
            r["text"],
            r["gold"],
            f"{r['teacher_answer']} ({r['teacher_confidence']:.0%})",
            f"{r['student_answer']} ({r['student_confidence']:.0%})",
            None if r["kl"] != r["kl"] else round(r["kl"], 3),
        ]
        for r in rows
    ]


class ErrorsTab:
    """The Errors tab's components, callbacks and events; it opens examples into the Ask tab's inputs
    (switching `tabs`) and then answers and explains them."""

    def __init__(
        self,
        state: AppState,
        ask_tab: AskTab,
        attention_tab: AttentionTab,
        tabs: gr.Tabs,
        errors_n: int,
        data_roots: dict[str, str] | None = None,
    ):
        self.state, self.ask_tab, self.attention_tab, self.tabs = state, ask_tab, attention_tab, tabs
        self.errors_n = errors_n
        self.data_roots = dict(data_roots or {})  # real dataset name (or "*": any) -> its folder
        self.real: dict[str, object] = {}  # pair -> its real test split, read once
        self.rows: dict[str, tuple[list[dict], Path]] = {}  # pair -> (compared rows, their CSV)
        self.export_dir = Path(tempfile.mkdtemp(prefix="workbench-app-"))

    def layout(self) -> None:
        teacher, _ = self.state.pairs[self.state.names[0]]
        gr.Markdown(
            f"Where teacher and student answer differently on the first {self.errors_n} examples of the test "
            "split (computed on first use, then kept). Clicking a row opens the example."
        )
        self.api = gr.Button(visible=False)  # the public endpoints' trigger (`ui.endpoint`): API clients only
        with gr.Row():
            self.qtype = gr.Dropdown(["all", *teacher.meta.get("qtypes", [])], value="all", label="question type")
            self.wrong = gr.Radio(
                [("any", "any"), ("student wrong", "student"), ("teacher wrong", "teacher")], value="any", label="show"
            )
            self.target = gr.Radio(
                ["Ask", "Attention"], value="Attention", label="open a row in", elem_id="open-target"
            )
            self.find_btn = gr.Button("Find disagreements", variant="primary", elem_id="find-errors")
        self.summary = gr.Markdown(elem_id="errors-summary")
        self.table = gr.Dataframe(
            headers=ERROR_HEADERS,
            interactive=False,
            wrap=True,
            max_height=420,
            column_widths=["6%", "11%", "41%", "9%", "13%", "13%", "7%"],
            elem_id="errors-table",
        )
        with gr.Row():
            self.plot = gr.Plot(label="accuracy and agreement by type", elem_id="errors-plot")
            with gr.Column():
                self.file = gr.File(label="every compared example (CSV)")
                self.open_index = gr.Number(label="test example #", precision=0, minimum=0, elem_id="open-index")
                self.open_btn = gr.Button("Open example", elem_id="open-example")

    def wire(self, tab: gr.Tab) -> None:
        message = self.ask_tab.message
        inputs = [self.ask_tab.pair, self.qtype, self.wrong]
        outputs = [self.summary, self.plot, self.table, self.file, self.qtype]
        events = [(self.find_btn.click, "errors_on_click"), (tab.select, "errors_on_tab"),
                  (self.qtype.input, "errors_by_type"), (self.wrong.input, "errors_by_who")]  # fmt: skip
        endpoint(self.errors, inputs, outputs, "errors", self.api, events, message, CLEARED, **ANALYSIS_QUEUE)
        a = self.ask_tab
        opened = [a.image, a.image2, a.question, a.source_info, self.tabs]
        pair, target = a.pair, self.target
        self.api.click(self.open_example, [pair, self.open_index, target], opened, api_name="open_example")
        page_outputs = [*opened, a.examples, message]
        by_index = self.open_btn.click(shown(self.open_page, UNCHANGED), [pair, self.open_index, target], page_outputs,
                                       api_name="open_on_click", **PRIVATE)  # fmt: skip
        by_row = self.table.select(shown(self.open_row, UNCHANGED), [pair, target], page_outputs, api_name="open_row",
                                   **PRIVATE)  # fmt: skip
        for dep, name in ((by_index, "index"), (by_row, "row")):
            self.attention_tab.explain_after(a.then_ask(dep, f"ask_after_open_{name}"), f"explain_after_open_{name}")

    @property
    def reset_outputs(self) -> list:
        return [self.qtype, self.summary, self.plot, self.table]

    def reset(self, teacher: Checkpoint) -> tuple:
        """Updates of `reset_outputs` for a new pair: its question types, nothing compared yet."""
        return gr.update(choices=["all", *teacher.meta.get("qtypes", [])], value="all"), "", None, None

    def dataset_name(self, pair_name: str) -> str:
        """The dataset a pair is compared on: the real one its student (else its teacher) was trained on, else
        the teacher's generated one."""
        from workbench.data import is_real_dataset

        teacher, student = self.state.pair(pair_name)
        for ck in (student, teacher):
            if ck is not None and is_real_dataset(ck.meta.get("dataset", "")):
                return ck.meta["dataset"]
        return dataset_of(teacher)

    def test_split(self, pair_name: str):
        """The first `errors_n` test examples of the pair's dataset, read once: a real dataset from its data
        root, in the teacher's class order (VQAv2: its answer vocabulary)."""
        from workbench.data import LAYOUTS, is_real_dataset, load_dataset

        teacher, _ = self.state.pair(pair_name)
        name = self.dataset_name(pair_name)
        if not is_real_dataset(name):
            return self.state.dataset(teacher, self.errors_n)
        if pair_name not in self.real:
            root = self.data_roots.get(name) or self.data_roots.get("*")
            if root is None:
                raise gr.Error(f"This pair was trained on {name}, read from disk: start the app with --data-root "
                               f"(the folder holding {LAYOUTS[name]}).")  # fmt: skip
            self.real[pair_name] = load_dataset(name, "test", self.errors_n, data_root=root, labels=teacher.labels)
        return self.real[pair_name]

    def compared(self, pair_name: str, progress) -> tuple[list[dict], Path]:
        """(the pair's compared test examples, their CSV), computed on first use. Each model reads the images as
        its checkpoint does (`Collator.for_checkpoint`: a HF ViLT teacher and its students keep the aspect ratio)."""
        from workbench.data import Collator
        from workbench.evaluate import compare_models, export_rows

        teacher, student = self.state.pair(pair_name, analysis=True)
        if student is None:
            raise gr.Error(NO_STUDENT)
        if pair_name not in self.rows:
            progress(0, desc=f"comparing teacher and student on {self.errors_n} test examples")
            rows = compare_models(
                teacher.model,
                student.model,
                self.test_split(pair_name),
                Collator.for_checkpoint(teacher),
                student_collator=Collator.for_checkpoint(student),
                progress=True,  # a tqdm bar, which gr.Progress(track_tqdm=True) shows
            )
            slug = "".join(c if c.isalnum() else "-" for c in pair_name).strip("-")
            self.rows[pair_name] = rows, export_rows(rows, self.export_dir / f"{slug}-teacher-vs-student.csv")
        return self.rows[pair_name]

    @user_errors
    def errors(self, pair_name: str, qtype: str, wrong: str, progress=gr.Progress(track_tqdm=True)):
        """Examples of the test split where teacher and student answer differently (computed once)."""
        from workbench.evaluate import accuracy_by_type, disagreements

        rows, csv = self.compared(pair_name, progress)
        stats = accuracy_by_type(rows)
        all_dis = disagreements(rows)
        shown = disagreements(
            rows, None if qtype in (None, "", "all") else qtype, None if wrong in (None, "", "any") else wrong
        )
        o = stats["overall"]
        summary = (
            f"{o['n']} test examples of `{self.dataset_name(pair_name)}`: teacher {o['teacher']:.1%}, "
            f"student {o['student']:.1%}, same answer {o['agree']:.1%}. **{len(all_dis)} disagreements**, "
            f"{len(shown)} shown (most confident student first). Click a row to open it."
        )
        types = ["all", *stats["per_type"]]
        return (
            summary,
            accuracy_bars(stats["per_type"]),
            {"headers": ERROR_HEADERS, "data": table_rows(shown)},
            str(csv),
            gr.update(choices=types, value=qtype if qtype in types else "all"),
        )

    @user_errors
    def open_example(self, pair_name: str, index, target: str = "Ask"):
        """Test example `index` (a row of the Errors table) into the inputs; switch to `target`."""
        data = self.test_split(pair_name)
        if index is None or not 0 <= int(index) < len(data):
            raise gr.Error(f"No test example #{index}; the Errors tab compares examples 0 to {len(data) - 1}.")
        ex = data[int(index)]
        # a VQAv2 question none of whose answers is in the vocabulary has no gold label (-100)
        gold = data.labels[ex.label] if 0 <= ex.label < len(data.labels) else "none in the vocabulary"
        info = f"test example #{int(index)} · {html.escape(ex.qtype)} · gold answer: **{html.escape(gold)}**"
        second = ex.images[1] if len(ex.images) > 1 else None
        tab = "attention" if str(target).lower() == "attention" else "ask"
        return ex.images[0], second, self.state.suggest(ex.text), info, gr.Tabs(selected=tab)

    def open_page(self, pair_name: str, index, target: str = "Ask"):
        """`open_example` for the page: also the examples about that test example (`AppState.scene_examples`)."""
        opened = self.open_example(pair_name, index, target)
        teacher, _ = self.state.pair(pair_name)
        data = self.test_split(pair_name)
        examples = self.state.scene_examples(teacher, data, int(index), data[int(index)])
        return (*opened, gr.Dataset(samples=[[q] for q in examples]))

    def open_row(self, pair_name: str, target: str, evt: gr.SelectData):
        """A click in the Errors table: open that row's example (the row's first cell is its index)."""
        if not evt.row_value:
            raise gr.Error("Click a row of the table.")
        return self.open_page(pair_name, int(evt.row_value[0]), target)


def build(
    state: AppState,
    ask_tab: AskTab,
    attention_tab: AttentionTab,
    tabs: gr.Tabs,
    errors_n: int,
    data_roots: dict[str, str] | None = None,
) -> ErrorsTab:
    """The Errors tab (inside the app's `gr.Tabs`), its components and events; `data_roots`: the folders of the
    real datasets pairs were trained on ({name: folder}, "*" for any; see the module docstring)."""
    tab = ErrorsTab(state, ask_tab, attention_tab, tabs, errors_n, data_roots)
    with gr.Tab("Errors", id="errors") as page:
        tab.layout()
    tab.wire(page)
    return tab
