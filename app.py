"""The workbench demo: ask the shipped models about an image. Thin: every computation is a library call.

python app.py [--port 7860] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from workbench.api import ASSETS, ask, load_model  # noqa: E402
from workbench.data.samples import load_samples  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.viz import top_answers_bar  # noqa: E402

# display name -> shipped checkpoint folder in assets/
SHIPPED = {
    "shapes VQA teacher": "shapes-vqa-teacher",
    "shapes entailment teacher": "shapes-ve-teacher",
    "easy-VQA teacher": "easy-vqa-teacher",
    "shapes VQA student (DiDE)": "shapes-vqa-student",
    "shapes entailment student (DiDE)": "shapes-ve-student",
    "easy-VQA student (DiDE)": "easy-vqa-student",
}


def load_shipped() -> dict:
    """Load every shipped checkpoint once, at start-up."""
    return {name: load_model(folder) for name, folder in SHIPPED.items() if (ASSETS / folder).exists()}


def build_app(models: dict, samples: list[dict]) -> gr.Blocks:
    names = list(models)
    if not names:
        raise WorkbenchError(f"no shipped checkpoints found in {ASSETS}; run `make rebuild`")

    def answer(model_name: str, image, question: str):
        if model_name not in models:
            raise gr.Error(f"unknown model {model_name!r}")
        if image is None:
            raise gr.Error("pick a sample image or upload one first")
        try:
            result = ask(models[model_name], image, question)
        except WorkbenchError as e:
            raise gr.Error(str(e)) from e
        text = f"**{result['answer']}** ({result['confidence']:.1%}) — {result['latency_ms']:.1f} ms"
        return text, top_answers_bar(result["top"], title=model_name)

    with gr.Blocks(title="VL distillation workbench") as demo:
        gr.Markdown("# VL distillation workbench\nAsk a shipped model a question about an image.")
        with gr.Row():
            with gr.Column():
                model_name = gr.Dropdown(names, value=names[0], label="model")
                image = gr.Image(type="pil", label="image", height=256)
                question = gr.Textbox(
                    label="question (VQA) or hypothesis (entailment)",
                    placeholder="which is further left, the red square or the blue circle?",
                )
                go = gr.Button("Ask", variant="primary")
                gr.Examples(
                    examples=[[s["path"], q] for s in samples for q in (s["questions"][:2] + s["hypotheses"][:1])],
                    inputs=[image, question],
                    label="samples",
                )
            with gr.Column():
                out_text = gr.Markdown(elem_id="answer")
                out_plot = gr.Plot(label="top answers", elem_id="top-answers")
        go.click(answer, [model_name, image, question], [out_text, out_plot], api_name="ask")
        question.submit(answer, [model_name, image, question], [out_text, out_plot], api_name=False)
    demo.queue(default_concurrency_limit=2)
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the workbench demo on the shipped checkpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    t0 = time.perf_counter()
    demo = build_app(load_shipped(), load_samples(ASSETS / "samples"))
    print(f"models loaded in {time.perf_counter() - t0:.1f} s")
    demo.launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
