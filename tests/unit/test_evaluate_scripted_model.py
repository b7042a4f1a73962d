"""`workbench.evaluate` against a scripted model: every answer is fixed in advance, so accuracy overall, per
question type and per tag, the predictions, the VQA score and the teacher-student comparison rows are known by
hand. Batches of 3 over 7 examples cross batch boundaries (an index carried across batches must be right)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from workbench.data.collate import Collator
from workbench.data.example import Example
from workbench.evaluate import (
    accuracy_by_type,
    compare_models,
    confusion_matrix,
    disagreements,
    evaluate,
    export_rows,
    format_metrics,
    write_metrics,
)

LABELS = ["zero", "one", "two", "three", "red", "blue"]
# (text, question type, gold label, the scripted answer, tags)
ROWS = [
    ("how many circles", "counting", 1, 1, ("counting", "small")),
    ("how many squares", "counting", 2, 0, ("counting", "small", "negated")),
    ("how many triangles", "counting", 3, 3, ("counting",)),
    ("what colour is the circle", "colour", 4, 4, ("colour", "negated")),
    ("what colour is the square", "colour", 5, 4, ("colour",)),
    ("is there a red circle", "existence", 0, 1, ("existence", "negated")),
    ("is there a blue square", "existence", 0, 1, ("existence",)),
]
# what the hand says: 3 of 7 right; counting 2/3, colour 1/2, existence 0/2
PER_TYPE = {"colour": (0.5, 2), "counting": (2 / 3, 3), "existence": (0.0, 2)}
PER_TAG = {"negated": (1 / 3, 3), "small": (0.5, 2)}  # a tag equal to the question type is not a tag
LOGIT = 5.0  # the scripted answer's logit; every other answer's is 0
CONFIDENCE = math.exp(LOGIT) / (math.exp(LOGIT) + len(LABELS) - 1)


class ListDataset:
    def __init__(self, rows, with_scores=False):
        image = Image.new("RGB", (8, 8), "white")
        self.labels = LABELS
        self.examples = []
        for i, (text, qtype, gold, _, _) in enumerate(rows):
            meta = {"scores": np.eye(len(LABELS))[gold] * 0.3 + 0.1 * i} if with_scores else {}
            self.examples.append(Example([image], text, gold, qtype, meta))
        self.row_tags = [r[4] for r in rows]

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]

    def tags(self, i):
        return self.row_tags[i]


class Scripted(nn.Module):
    """Answers each known question (recognised by its token ids) with the scripted label."""

    def __init__(self, tokenizer, answers: dict[str, int]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.by_ids = {tuple(tokenizer(text)["input_ids"]): a for text, a in answers.items()}
        self.calls = 0

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        self.calls += 1
        assert not self.training  # evaluation runs the model in eval mode
        logits = torch.zeros(len(input_ids), len(LABELS))
        for i, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
            logits[i, self.by_ids[tuple(ids[mask.bool()].tolist())]] = LOGIT
        return type("Out", (), {"logits": logits + self.weight})()


@pytest.fixture()
def collator(tokenizer):
    return Collator(tokenizer, image_size=8)


def _model(tokenizer, rows=ROWS, column=3):
    return Scripted(tokenizer, {r[0]: r[column] for r in rows})


def _flat(groups: dict) -> dict:
    return {f"{name}.{key}": value for name, m in groups.items() for key, value in m.items()}


def _flat_expected(groups: dict) -> dict:
    return {f"{name}.{key}": value for name, (acc, n) in groups.items() for key, value in (("accuracy", acc), ("n", n))}


def test_accuracy_overall_and_per_question_type_are_the_scripted_ones(tokenizer, collator):
    model = _model(tokenizer).train()
    metrics = evaluate(model, ListDataset(ROWS), collator, batch_size=3)
    assert metrics["n"] == 7 and metrics["accuracy"] == pytest.approx(3 / 7)
    assert list(metrics["per_type"]) == sorted(PER_TYPE)
    assert _flat(metrics["per_type"]) == pytest.approx(_flat_expected(PER_TYPE))
    assert _flat(metrics["per_tag"]) == pytest.approx(_flat_expected(PER_TAG))
    assert model.training and model.calls == 3  # three batches; the model's mode is given back
    assert "predictions" not in metrics and "vqa_score" not in metrics


def test_limit_scores_the_first_examples_only(tokenizer, collator):
    metrics = evaluate(_model(tokenizer), ListDataset(ROWS), collator, batch_size=2, limit=4)
    assert metrics["n"] == 4 and metrics["accuracy"] == pytest.approx(3 / 4)
    assert _flat(metrics["per_type"]) == pytest.approx(_flat_expected({"colour": (1.0, 1), "counting": (2 / 3, 3)}))
    assert _flat(metrics["per_tag"]) == pytest.approx(_flat_expected({"negated": (0.5, 2), "small": (0.5, 2)}))


def test_predictions_carry_each_examples_answer_and_confidence(tokenizer, collator):
    metrics = evaluate(_model(tokenizer), ListDataset(ROWS), collator, batch_size=3, return_predictions=True)
    got = [(p["text"], p["qtype"], p["label"], p["pred"]) for p in metrics["predictions"]]
    assert got == [r[:4] for r in ROWS]
    assert all(p["confidence"] == pytest.approx(CONFIDENCE) and "score" not in p for p in metrics["predictions"])


def test_vqa_score_is_the_mean_official_accuracy_of_the_top_answers(tokenizer, collator):
    data = ListDataset(ROWS, with_scores=True)
    metrics = evaluate(_model(tokenizer), data, collator, batch_size=3, return_predictions=True)
    # each example's score vector: 0.1 * i everywhere, plus 0.3 on its gold answer
    scores = [0.1 * i + (0.3 if r[2] == r[3] else 0.0) for i, r in enumerate(ROWS)]
    vqa = metrics["vqa_score"]
    assert vqa["n"] == 7 and vqa["accuracy"] == pytest.approx(sum(scores) / 7)
    for qtype in PER_TYPE:
        mine = [s for s, r in zip(scores, ROWS) if r[1] == qtype]
        assert vqa["per_type"][qtype] == {"accuracy": pytest.approx(sum(mine) / len(mine)), "n": len(mine)}
    assert [p["score"] for p in metrics["predictions"]] == pytest.approx(scores)
    text = format_metrics(metrics)
    assert f"VQA score {100 * sum(scores) / 7:.2f} (n=7)" in text


def test_format_and_write_metrics_give_the_numbers_and_leave_predictions_out(tokenizer, collator, tmp_path):
    metrics = evaluate(_model(tokenizer), ListDataset(ROWS), collator, batch_size=3, return_predictions=True)
    text = format_metrics(metrics).splitlines()
    assert text[0] == f"accuracy {100 * 3 / 7:.2f}% (n=7)"
    assert text[1].split() == ["colour", "50.00%", "(n=2)"] and text[2].split() == ["counting", "66.67%", "(n=3)"]
    assert text[3].split() == ["existence", "0.00%", "(n=2)"] and text[4].split() == ["negated", "33.33%", "(n=3)"]
    write_metrics(metrics, tmp_path / "deep" / "m.json")
    saved = json.loads((tmp_path / "deep" / "m.json").read_text())
    assert "predictions" not in saved and saved["per_type"]["counting"]["n"] == 3 and saved["n"] == 7


# ----------------------------------------------------------------------------------------------- teacher vs student

# the teacher's scripted answers (the student's are ROWS' fourth column)
TEACHER = [1, 2, 0, 4, 5, 1, 0]


def _rows(tokenizer, collator, **kw):
    teacher = Scripted(tokenizer, {r[0]: a for r, a in zip(ROWS, TEACHER)}).eval()
    student = _model(tokenizer).train()
    rows = compare_models(teacher, student, ListDataset(ROWS), collator, agreement=None, batch_size=3, **kw)
    assert student.training and not teacher.training  # each model's mode is given back
    return rows


def test_comparison_rows_hold_both_models_answers_by_hand(tokenizer, collator):
    rows = _rows(tokenizer, collator)
    assert [r["index"] for r in rows] == list(range(7))
    for r, (text, qtype, gold, student, _), teacher in zip(rows, ROWS, TEACHER):
        assert (r["text"], r["qtype"], r["gold"]) == (text, qtype, LABELS[gold])
        assert (r["teacher_answer"], r["student_answer"]) == (LABELS[teacher], LABELS[student])
        assert r["teacher_correct"] == (teacher == gold) and r["student_correct"] == (student == gold)
        assert r["agree"] == (teacher == student)
        assert r["teacher_confidence"] == pytest.approx(CONFIDENCE)
        assert r["student_confidence"] == pytest.approx(CONFIDENCE)
        assert math.isnan(r["kl"]) and math.isnan(r["spearman"]) and "teacher_score" not in r
    assert len(_rows(tokenizer, collator, limit=5)) == 5


def test_accuracy_by_type_confusion_and_disagreements_by_hand(tokenizer, collator, tmp_path):
    rows = _rows(tokenizer, collator)
    stats = accuracy_by_type(rows)
    assert stats["overall"] == {"teacher": pytest.approx(5 / 7), "student": pytest.approx(3 / 7),
                                "agree": pytest.approx(3 / 7), "n": 7}  # fmt: skip
    assert stats["per_type"]["counting"] == {"teacher": pytest.approx(2 / 3), "student": pytest.approx(2 / 3),
                                             "agree": pytest.approx(1 / 3), "n": 3}  # fmt: skip
    assert stats["per_type"]["existence"] == {"teacher": 0.5, "student": 0.0, "agree": 0.5, "n": 2}
    assert list(stats["per_type"]) == ["colour", "counting", "existence"]
    m = confusion_matrix(rows, LABELS)
    assert m.sum() == 7 and m[2, 0] == 1 and m[5, 4] == 1 and m[0, 1] == 2 and m[4, 4] == 1
    assert confusion_matrix(rows, LABELS, who="teacher")[3, 0] == 1
    differ = disagreements(rows)
    assert sorted(r["index"] for r in differ) == [1, 2, 4, 6]
    assert [r["index"] for r in disagreements(rows, qtype="counting")] == [1, 2]
    assert [r["index"] for r in disagreements(rows, wrong="teacher")] == [2]
    assert [r["index"] for r in disagreements(rows, wrong="student")] == [1, 4, 6]
    assert [r["index"] for r in disagreements(rows, sort_by="index", descending=False)] == [1, 2, 4, 6]
    assert [r["index"] for r in disagreements(rows, sort_by="index")] == [6, 4, 2, 1]
    assert [r["index"] for r in disagreements(rows, sort_by="text", descending=False)] == [1, 2, 6, 4]
    assert [r["index"] for r in disagreements(rows, sort_by="kl")] == [1, 2, 4, 6]  # all NaN: kept in order
    path = export_rows(rows, tmp_path / "rows.json")
    assert json.loads(path.read_text())[3]["student_answer"] == "red"


# ---------------------------------------------------------------------------------------------- edges the mutants found


class Untagged(ListDataset):
    """The same examples without finer tags (most datasets)."""

    tags = None


def test_a_dataset_without_tags_has_no_per_tag_and_one_example_counts_as_one(tokenizer, collator, capsys):
    data = Untagged(ROWS)
    metrics = evaluate(_model(tokenizer), data, collator, batch_size=3)
    assert "per_tag" not in metrics and metrics["accuracy"] == pytest.approx(3 / 7)
    assert format_metrics(metrics).splitlines()[-1].split() == ["existence", "0.00%", "(n=2)"]
    one = evaluate(_model(tokenizer), data, collator, limit=1)
    assert one["n"] == 1 and one["accuracy"] == 1.0 and one["per_type"]["counting"] == {"accuracy": 1.0, "n": 1}
    assert capsys.readouterr().err == ""  # no progress bar unless asked


def test_the_progress_bars_say_what_runs_and_how_far(tokenizer, collator, capsys):
    evaluate(_model(tokenizer), Untagged(ROWS), collator, batch_size=3, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\reval:   0%|") and " 0/3 [" in err and not err.endswith("\n")  # and cleared at the end
    teacher = Scripted(tokenizer, {r[0]: a for r, a in zip(ROWS, TEACHER)})
    compare_models(teacher, _model(tokenizer), Untagged(ROWS), collator, agreement=None, batch_size=3, progress=True)
    err = capsys.readouterr().err
    assert "compare: 100%" in err and "3/3" in err


def test_the_vqa_per_type_lines_give_100_times_the_accuracy(tokenizer, collator):
    metrics = evaluate(_model(tokenizer), ListDataset(ROWS, with_scores=True), collator, batch_size=3)
    lines = format_metrics(metrics).splitlines()
    vqa = metrics["vqa_score"]["per_type"]["colour"]
    assert f"  {'colour':<14} {100 * vqa['accuracy']:6.2f}   (n=2)" in lines


def test_comparison_rows_carry_each_models_vqa_score_and_a_question_without_gold(tokenizer, collator):
    data = ListDataset(ROWS, with_scores=True)
    data.examples[0].label = -100  # a VQAv2 question none of whose answers is in the vocabulary
    teacher = Scripted(tokenizer, {r[0]: a for r, a in zip(ROWS, TEACHER)}).eval()
    rows = compare_models(teacher, _model(tokenizer), data, collator, agreement=None, batch_size=3)
    assert rows[0]["gold"] == "" and not rows[0]["teacher_correct"] and not rows[0]["student_correct"]
    for i, (r, row, t) in enumerate(zip(rows, ROWS, TEACHER)):
        gold = row[2]
        assert r["teacher_score"] == pytest.approx(0.1 * i + (0.3 if t == gold else 0.0))
        assert r["student_score"] == pytest.approx(0.1 * i + (0.3 if row[3] == gold else 0.0))


def test_the_student_reads_its_own_batches_and_agreement_is_asked_at_the_given_layer(tokenizer, monkeypatch):
    import workbench.explain.agreement as agreement_module

    asked = []

    def fake_agreement(teacher, student, batch, method, layer):
        asked.append((method, layer, len(batch)))
        return [{"kl": 0.5 + i, "spearman": 0.25} for i in range(len(batch))]

    monkeypatch.setattr(agreement_module, "batch_agreement", fake_agreement)
    teacher, student = Scripted(tokenizer, {r[0]: a for r, a in zip(ROWS, TEACHER)}).eval(), _model(tokenizer)
    sizes = []
    student_forward = student.forward

    def record_size(input_ids, attention_mask, pixel_values, **kw):
        sizes.append(pixel_values.shape[-1])
        return student_forward(input_ids, attention_mask, pixel_values, **kw)

    student.forward = record_size
    rows = compare_models(teacher, student, ListDataset(ROWS), Collator(tokenizer, 8), agreement="rollout", layer=0,
                          batch_size=3, student_collator=Collator(tokenizer, 16))  # fmt: skip
    assert sizes == [16, 16, 16]  # the student's collator, not the teacher's
    assert asked == [("rollout", 0, 3), ("rollout", 0, 3), ("rollout", 0, 1)]
    assert [r["kl"] for r in rows] == [0.5, 1.5, 2.5, 0.5, 1.5, 2.5, 0.5] and {r["spearman"] for r in rows} == {0.25}


def test_confusion_counts_are_integers_and_sorting_is_numeric_for_numbers_and_textual_for_text():
    rows = [
        {"agree": False, "qtype": "q", "x": x, "t": t, "teacher_correct": True, "student_correct": False}
        for x, t in ((9, "b"), (100, "a"), (10, "c"))
    ]
    assert [r["x"] for r in disagreements(rows, sort_by="x")] == [100, 10, 9]  # as numbers, not as text
    assert [r["t"] for r in disagreements(rows, sort_by="t")] == ["c", "b", "a"]  # descending by default
    row = {"gold": "yes", "student_answer": "no", "teacher_answer": "yes"}
    assert confusion_matrix([row], ["yes", "no"]).dtype == np.int64
    single = accuracy_by_type([{"qtype": "q", "teacher_correct": True, "student_correct": False, "agree": False}])
    assert single["overall"] == {"teacher": 1.0, "student": 0.0, "agree": 0.0, "n": 1}


def test_exports_create_their_folders_and_take_one_row_or_none(tmp_path):
    one = [{"a": 1, "b": "x"}]
    path = export_rows(one, tmp_path / "deep" / "er" / "rows.csv")
    assert path.read_text().splitlines() == ["a,b", "1,x"]
    assert export_rows([], tmp_path / "empty.csv").read_text().strip() == ""
    write_metrics({"accuracy": 1.0, "predictions": []}, tmp_path / "m" / "n" / "metrics.json")
    write_metrics({"accuracy": 0.5}, tmp_path / "m" / "n" / "metrics.json")  # the folder exists now: fine
    assert json.loads((tmp_path / "m" / "n" / "metrics.json").read_text()) == {"accuracy": 0.5}
