"""Real data end to end through the command line, as a researcher runs it (docs/real-data.md), on the fixture
trees in the releases' formats (`real_fixtures`) and tiny Hugging Face ViLT folders with random weights saved
with `save_pretrained`: distil a `ViltForQuestionAnswering` on VQAv2 and a `ViltForImagesAndTextClassification`
on NLVR2 with DiDE (the loss decreases), evaluate student and teacher (the VQA score per answer type), train a
fusion teacher on SNLI-VE, explain examples of a split, run a grid on a real dataset, compare a real pair in
the app's Errors tab; a wrong layout is one clear line and exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.data import num_images
from workbench.data.fixtures import save_tiny_vilt, vqa_labels

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = {"vqav2": vqa_labels(), "nlvr2": ("False", "True")}
# a few epochs of the fixture's training split (VQAv2: 48 questions, NLVR2: 32 pairs) at batch 8: the loss falls
# well below its start at this rate on every seed tried; each run takes seconds
DISTIL = ["--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "4", "--log-every", "1", "--no-progress"]
EPOCHS = {"vqav2": 6, "nlvr2": 4}


@pytest.fixture(scope="module")
def vilt(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """Tiny HF ViLT folders: a VQA model over the VQAv2 fixture's answers, and an NLVR2 model."""
    root = tmp_path_factory.mktemp("vilt")
    return {name: save_tiny_vilt(root / name, tokenizer, LABELS[name], num_images(name)) for name in LABELS}


@pytest.fixture(scope="module")
def students(tmp_path_factory, vilt, real_fixtures) -> dict[str, Path]:
    """`workbench distill --recipe dide --teacher <HF ViLT> --dataset NAME --data-root <fixture>` per dataset (the
    NLVR2 run reads its images in a DataLoader worker): {name: run folder}."""
    root = tmp_path_factory.mktemp("students")
    runs = {}
    for name in LABELS:
        out = root / name
        workers = ["--num-workers", "1"] if name == "nlvr2" else []
        argv = ["distill", "--recipe", "dide", "--teacher", str(vilt[name]), "--dataset", name,
                "--data-root", str(real_fixtures[name]), "--out", str(out), "--epochs", str(EPOCHS[name]),
                *DISTIL, *workers]  # fmt: skip
        assert main(argv) == 0
        runs[name] = out
    return runs


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.parametrize("name", list(LABELS))
def test_dide_distils_a_hf_vilt_folder_on_real_data_and_its_loss_decreases(students, vilt, name):
    run = students[name]
    losses = _losses(run)
    assert len(losses) >= 16  # a record per step
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.97 * first, losses
    meta = json.loads((run / "model" / "workbench.json").read_text())
    assert (meta["dataset"], meta["kind"], meta["recipe"]) == (name, "dual", "dide")
    assert meta["labels"] == list(LABELS[name]) and meta["train_config"]["data_root"]
    # the student reads images as its teacher does: the teacher's preprocessor_config.json goes with it
    saved = json.loads((run / "model" / "preprocessor_config.json").read_text())
    assert saved["size"] == json.loads((vilt[name] / "preprocessor_config.json").read_text())["size"]


def test_eval_of_the_vqav2_student_prints_the_vqa_score_per_answer_type(students, real_fixtures, capsys):
    model = students["vqav2"] / "model"
    assert main(["eval", str(model), "--dataset", "vqav2", "--data-root", str(real_fixtures["vqav2"])]) == 0
    out = capsys.readouterr().out
    lines = out[out.index("VQA score") :].splitlines()
    assert lines[0].startswith("VQA score") and "(n=24)" in lines[0]  # the official val split: 8 images x 3
    assert [line.split()[0] for line in lines[1:4]] == ["yes/no", "number", "other"]
    metrics = json.loads((model / "eval-vqav2-test.json").read_text())
    assert set(metrics["vqa_score"]["per_type"]) == {"yes/no", "number", "other"}
    # the data root the student was trained with is the default
    assert main(["eval", str(model), "--split", "val", "--out", str(model / "again.json")]) == 0
    assert json.loads((model / "again.json").read_text())["vqa_score"] == metrics["vqa_score"]


def test_eval_of_the_nlvr2_student_on_its_dev_split(students, real_fixtures, capsys):
    model = students["nlvr2"] / "model"
    assert main(["eval", str(model), "--data-root", str(real_fixtures["nlvr2"]), "--split", "dev"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "(n=16)" in out and "VQA score" not in out


def test_eval_of_the_hf_teacher_folder_itself(vilt, real_fixtures, tmp_path, capsys):
    root = str(real_fixtures["vqav2"])
    teacher = ["eval", str(vilt["vqav2"]), "--dataset", "vqav2", "--data-root", root]
    assert main([*teacher, "--out", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "VQA score" in out and all(t in out for t in ("yes/no", "number", "other"))
    # test-dev has no answers: the predictions go to a file in the evaluation server's format
    assert main([*teacher, "--split", "test-dev", "--out", str(tmp_path / "dev.json")]) == 0
    answers = json.loads((tmp_path / "dev-answers.json").read_text())
    assert len(answers) == 12 and set(answers[0]) == {"question_id", "answer"}
    assert all(a["answer"] in LABELS["vqav2"] for a in answers)


def test_train_a_fusion_teacher_on_snli_ve(real_fixtures, tmp_path, capsys):
    out = tmp_path / "teacher"
    argv = ["train", "--dataset", "snli-ve", "--data-root", str(real_fixtures["snli-ve"]), "--out", str(out),
            "--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--epochs", "2", *DISTIL]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "model" / "workbench.json").read_text())
    assert (meta["task"], meta["dataset"], meta["kind"]) == ("ve", "snli-ve", "fusion")
    assert meta["labels"] == ["entailment", "neutral", "contradiction"] and meta["steps"] == 8
    assert not (out / "model" / "preprocessor_config.json").exists()  # our own model: square images
    assert "test accuracy" in capsys.readouterr().out


def test_a_bad_layout_is_one_line_and_exit_code_2(real_fixtures, vilt, tmp_path, capsys):
    bad = tmp_path / "vqav2"
    shutil.copytree(real_fixtures["vqav2"], bad)
    (bad / "v2_mscoco_val2014_annotations.json").unlink()
    for argv in (
        ["eval", str(vilt["vqav2"]), "--dataset", "vqav2", "--data-root", str(bad), "--split", "val"],
        ["distill", "--teacher", str(vilt["vqav2"]), "--dataset", "vqav2", "--data-root", str(bad),
         "--out", str(tmp_path / "run"), "--no-progress"],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: VQAv2 val: missing")
        assert "v2_mscoco_val2014_annotations.json" in err and "v2_OpenEnded_mscoco_val2014_questions.json" in err
    assert main(["train", "--dataset", "nlvr2", "--out", str(tmp_path / "x")]) == 2
    assert "pass --data-root" in capsys.readouterr().err
    assert main(["train", "--dataset", "shapes-vqa", "--data-root", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "takes no --data-root" in capsys.readouterr().err


def test_explain_an_example_of_a_real_split_for_teacher_and_student(students, vilt, real_fixtures, tmp_path, capsys):
    out = tmp_path / "explain"
    argv = ["explain", str(vilt["vqav2"]), "--student", str(students["vqav2"] / "model"), "--dataset", "vqav2",
            "--data-root", str(real_fixtures["vqav2"]), "--index", "4", "--out", str(out),
            "--ig-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "vqav2 val #4" in printed and "teacher:" in printed and "student:" in printed
    example = json.loads((out / "example.json").read_text())
    assert example["split"] == "val" and example["index"] == 4 and example["gold"]
    summary = json.loads((out / "explain.json").read_text())
    attention = summary["models"]["teacher"]["maps"]["attention"]
    assert len(attention) != len(attention[0])  # a non-square image keeps its aspect ratio: 2 x 3 patches of 32
    # two images (NLVR2): Integrated Gradients takes one, so the default methods leave it out
    argv = ["explain", str(vilt["nlvr2"]), "--dataset", "nlvr2", "--data-root", str(real_fixtures["nlvr2"]),
            "--index", "1", "--split", "dev", "--out", str(tmp_path / "nlvr")]  # fmt: skip
    assert main(argv) == 0
    methods = json.loads((tmp_path / "nlvr" / "explain.json").read_text())["methods"]
    assert methods == ["attention", "rollout", "relevancy"]


def test_explain_results_on_a_real_split(students, vilt, real_fixtures, tmp_path):
    argv = ["explain-results", "--teacher", str(vilt["vqav2"]), "--students", f"dide={students['vqav2'] / 'model'}",
            "--dataset", "vqav2", "--data-root", str(real_fixtures["vqav2"]), "--split", "val", "--size", "6",
            "--ig-steps", "2", "--random-orders", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    faith = json.loads((tmp_path / "faithfulness.json").read_text())
    agree = json.loads((tmp_path / "agreement.json").read_text())
    assert (faith["dataset"], faith["split"], agree["split"]) == ("vqav2", "val", "val")
    assert faith["settings"]["n"] == 6 and agree["students"]["dide"]["overall"]["n"] == 6


def test_a_grid_on_a_real_dataset_takes_its_data_root(vilt, real_fixtures, tmp_path, monkeypatch):
    from workbench.configs import grids

    grid = dict(
        grids.DIDE, name="dide-vqav2", results="dide-vqav2.json", paths={"teacher": str(vilt["vqav2"])},
        fingerprint=None, budget=dict(epochs=1, batch_size=8, lr=1e-3, warmup_steps=2, val_size=8, test_size=8),
        task_budgets={}, blocks=(dict(tasks=("vqav2",), rows=("dide",), seeds=(0,)),), shipped={},
    )  # fmt: skip
    monkeypatch.setitem(grids.GRIDS, "dide-vqav2", grid)
    argv = ["experiment", "dide-vqav2", "--runs", str(tmp_path / "runs"), "--assets", str(tmp_path),
            "--results", str(tmp_path / "r.json"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2  # no folder for the real dataset
    root = str(real_fixtures["vqav2"].parent / "{task}")  # {task} stands for the dataset's name
    assert main([*argv, "--data-root", root]) == 0
    run = tmp_path / "runs" / "vqav2" / "dide-seed0"
    config = json.loads((run / "train_config.json").read_text())
    assert config["data_root"] == str(real_fixtures["vqav2"]) and config["dataset"] == "vqav2"
    assert "vqa_score" in json.loads((run / "test_metrics.json").read_text())
    # a grid whose runs read no real dataset refuses a data root
    assert main(["experiment", "dide", "--data-root", root, "--runs", str(tmp_path / "none")]) == 2


def test_the_app_errors_tab_compares_a_real_pair_on_its_test_split(students, vilt, real_fixtures):
    import gradio as gr

    from workbench.api import load_model
    from workbench.app.errors import ErrorsTab
    from workbench.app.state import AppState

    pair = "vqav2 · dide"
    state = AppState({pair: (load_model(vilt["vqav2"], "cpu"), load_model(students["vqav2"] / "model", "cpu"))}, [])
    with pytest.raises(gr.Error, match="--data-root"):
        ErrorsTab(state, None, None, None, errors_n=12).errors(pair, "all", "any", progress=lambda *a, **k: None)
    tab = ErrorsTab(state, None, None, None, errors_n=12, data_roots={"*": str(real_fixtures["vqav2"])})
    summary, _, table, csv, _ = tab.errors(pair, "all", "any", progress=lambda *a, **k: None)
    assert "12 test examples of `vqav2`" in summary and Path(csv).is_file()
    image, second, question, info, _ = tab.open_example(pair, 6, "Ask")
    assert image.size != (image.size[1], image.size[0]) and second is None and question and "gold answer" in info


def test_distill_retrieval_on_coco_karpathy(real_fixtures, tmp_path):
    argv = ["distill-retrieval", "--recipe", "clip", "--dataset", "coco-karpathy",
            "--data-root", str(real_fixtures["coco-karpathy"]), "--out", str(tmp_path / "clip"), "--epochs", "1",
            "--hidden-size", "32", "--num-layers", "2", "--num-heads", "2", "--val-size", "8", *DISTIL]  # fmt: skip
    from workbench.cli import build_parser

    args = build_parser("distill-retrieval").parse_args(argv)
    args.func(args)  # (not `main`: a refusal surfaces as its WorkbenchError)
    retrieval = ["retrieval", str(tmp_path / "clip" / "model"), "--dataset", "coco-karpathy", "--data-root",
                 str(real_fixtures["coco-karpathy"]), "--out", str(tmp_path / "r.json"), "--no-progress"]  # fmt: skip
    assert main(retrieval) == 0


def test_explainers_read_a_padded_batch_as_each_image_alone(vilt, real_fixtures, tokenizer):
    """On the aspect-ratio pipeline's padded batches the maps honour the pixel mask: the student's image-tower
    attention of a padded image is that of the image alone, text-to-image attention puts nothing on padding,
    and a deletion curve removes only the image's own patches."""
    import torch

    from workbench.data import Collator, load_dataset
    from workbench.explain.attention import cross_probs, eager_attention, self_attentions
    from workbench.explain.faithfulness import perturbation_curve
    from workbench.models import create_model
    from workbench.models.io import load_checkpoint

    ck = load_checkpoint(vilt["vqav2"])
    data = load_dataset("vqav2", "val", 6, data_root=real_fixtures["vqav2"], labels=ck.labels)
    batch = Collator.for_checkpoint(ck)([data[i] for i in range(6)])
    heights, widths = batch.pixel_mask[:, 0].any(2).sum(1), batch.pixel_mask[:, 0].any(1).sum(1)
    i = int(torch.nonzero((heights < batch.pixel_mask.shape[-2]) | (widths < batch.pixel_mask.shape[-1]))[0])
    h, w = int(heights[i]), int(widths[i])  # example i is padded
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "patch_size": 32, "image_size": 64}
    student = create_model("dual", len(tokenizer), len(ck.labels), **size).eval()
    with torch.no_grad(), eager_attention(student):
        padded = self_attentions(student, batch)["image"][-1][i]  # [heads, 1 + P, 1 + P] on the padded grid
        own = batch.pixel_values[i : i + 1, 0, :, :h, :w]  # the image without its padding
        alone = student.image_tower(pixel_values=own, interpolate_pos_encoding=True, output_attentions=True)
    alone = alone.attentions[-1][0]
    grid_w = batch.pixel_values.shape[-1] // 32
    real = [0] + [1 + r * grid_w + c for r in range(h // 32) for c in range(w // 32)]
    assert torch.allclose(padded[:, real][:, :, real], alone, atol=1e-5)
    assert padded[:, real][:, :, [k for k in range(padded.shape[-1]) if k not in real]].abs().max() == 0
    for model in (ck.model, student):
        t2i = cross_probs(model, batch, (-1,))["t2i"][i, 0]  # [heads, tokens, 1 + P]
        assert t2i[..., [k for k in range(t2i.shape[-1]) if k not in real]].abs().max() == 0
    curve = perturbation_curve(ck.model, batch, torch.rand(*batch.pixel_values.shape[-2:]).numpy()[::32, ::32],
                               index=i, random_orders=1, steps="patch")  # fmt: skip
    assert len(curve["scores"]) == len(real) and len(curve["random_scores"]) == len(real)  # real patches + 1


def test_hard_labels_on_vqav2_are_vilts_bce_and_pass_the_pixel_mask(vilt, real_fixtures):
    """A teacher trained on VQAv2 (`workbench train`, `HardLabels`) learns ViLT's loss: BCE against the soft
    targets times the number of answers, on the padded batch with its pixel mask."""
    import torch

    from workbench import losses
    from workbench.data import Collator, load_dataset
    from workbench.models.io import load_checkpoint
    from workbench.train import HardLabels

    ck = load_checkpoint(vilt["vqav2"])
    data = load_dataset("vqav2", "val", 8, data_root=real_fixtures["vqav2"], labels=ck.labels)
    batch = Collator.for_checkpoint(ck)([data[i] for i in range(8)])
    assert batch.targets is not None and batch.pixel_mask is not None
    loss, logs = HardLabels().loss(ck.model, batch)
    with torch.no_grad():
        logits = ck.model(batch.input_ids, batch.attention_mask, batch.pixel_values, pixel_mask=batch.pixel_mask).logits
    assert loss.item() == pytest.approx(losses.vqa_bce(logits, batch.targets).item(), rel=1e-5)
    assert logs["ce"] == pytest.approx(loss.item()) and 0 <= logs["accuracy"] <= 1
