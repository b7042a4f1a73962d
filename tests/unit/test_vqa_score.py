"""VQA targets (ViLT), accuracy (the official evaluation) and the two multi-label losses, against values
computed by hand."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from workbench.vqa_score import (
    AnswerScorer,
    answer_score,
    batch_vqa_scores,
    dense_row,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    soft_label_kd_multilabel,
    vilt_normalize,
    vqa_accuracy,
    vqa_bce,
    vqa_score_report,
    vqa_targets,
    vqa_vocabulary,
)


def test_vilt_score_table():
    assert [answer_score(n) for n in range(11)] == [0.0, 0.3, 0.6, 0.9] + [1.0] * 7


@pytest.mark.parametrize("n", range(11))
def test_the_table_is_the_official_leave_one_out_mean(n):
    # by hand: leaving out one of the n who gave it leaves n - 1; leaving out one of the others leaves n
    by_hand = (n * min(1, (n - 1) / 3) + (10 - n) * min(1, n / 3)) / 10 if n else 0.0
    answers = ["cat"] * n + ["dog"] * (10 - n)
    assert vqa_accuracy("cat", answers) == pytest.approx(by_hand)
    assert vqa_accuracy("cat", answers) == pytest.approx(answer_score(n))


def test_min_n_over_3_is_not_the_official_score_at_one_and_two_annotators():
    one, two = vqa_accuracy("cat", ["cat"] + ["dog"] * 9), vqa_accuracy("cat", ["cat"] * 2 + ["dog"] * 8)
    assert one == pytest.approx(0.3) and abs(one - 1 / 3) > 0.03
    assert two == pytest.approx(0.6) and abs(two - 2 / 3) > 0.06


def test_accuracy_with_normalisation():
    answers = ["2"] * 4 + ["two"] * 5 + ["3"]  # annotators disagree: "two" is normalised to "2" (9 of 10)
    assert vqa_accuracy("2", answers) == 1.0
    assert vqa_accuracy("two", answers) == 1.0
    assert vqa_accuracy("3", answers) == pytest.approx(0.3)
    assert vqa_accuracy("4", answers) == 0.0
    # all ten agree: the official code compares raw strings, so "2" does not match "two"
    assert vqa_accuracy("2", ["two"] * 10) == 0.0 and vqa_accuracy("two", ["two"] * 10) == 1.0
    assert vqa_accuracy("yes", ["yes."] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("the dog", ["a dog"] * 2 + ["dog"] + ["cat"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0  # whitespace, newlines and tabs are stripped


def test_accuracy_with_fewer_annotators_by_hand():
    # "a" given by 2 of 3: leaving out an "a" leaves 1 (1/3), twice; leaving out "b" leaves 2 (2/3)
    assert vqa_accuracy("a", ["a", "a", "b"]) == pytest.approx((1 / 3 + 1 / 3 + 2 / 3) / 3)
    assert vqa_accuracy("a", []) == 0.0


def test_normalisation_steps():
    assert process_punctuation("1,000") == "1000"  # a digit,digit anywhere: punctuation deleted
    assert process_punctuation("red, white") == "red white"  # a mark next to a space: deleted
    assert process_punctuation("black/white") == "black white"  # otherwise: a space
    assert process_punctuation("3.5 inches.") == "3.5 inches"  # periods go unless a digit follows
    assert process_digit_article("The Two Dogs") == "2 dogs"
    assert process_digit_article("an apple") == "apple"
    assert process_digit_article("none") == "0"
    assert process_digit_article("dont know") == "don't know"
    assert normalize_answer("Yes!") == "yes"
    assert vilt_normalize("1,000") == "1000" and vilt_normalize("a b,c") == "b c"


def test_vilt_targets_count_raw_strings():
    index = {"2": 0, "3": 1, "yes": 2}
    answers = ["2"] * 4 + ["two"] * 5 + ["3"]
    assert vqa_targets(answers, index) == {0: 1.0, 1: pytest.approx(0.3)}  # "two" is not in the vocabulary
    assert vqa_targets(["red"] * 2 + ["blue"] * 8, {"red": 4}) == {4: pytest.approx(0.6)}
    assert vqa_targets(["mauve"] * 10, index) == {}  # no answer in the vocabulary: an all-zero target row


def test_vilt_vocabulary_normalises_counts_and_keeps_first_appearance():
    mca = ["Two", "2", "yes", "dog.", "yes", "dog", "cat"]
    assert vqa_vocabulary(mca, min_count=2) == ("2", "yes", "dog")
    assert vqa_vocabulary(mca, min_count=1) == ("2", "yes", "dog", "cat")


def test_scorer_equals_the_official_accuracy_for_every_label():
    labels = ["2", "two", "yes", "no", "dog", "the dog", "red", "3.5", "1000", "don't know", "cat"]
    pool = ["2", "two", "Two", "yes", "yes.", "no", "dog", "a dog", "red", "3.5", "1,000", "dont know", "mauve"]
    scorer, rng = AnswerScorer(labels), random.Random(0)
    cases = [["two"] * 10, ["yes"] * 10] + [[rng.choice(pool) for _ in range(10)] for _ in range(300)]
    for answers in cases:
        scores = scorer.scores(answers)
        for i, label in enumerate(labels):
            assert scores.get(i, 0.0) == pytest.approx(vqa_accuracy(label, answers)), (label, answers)


def test_report_overall_and_per_answer_type_by_hand():
    report = vqa_score_report([1.0, 0.3, 0.0, 0.6], ["yes/no", "number", "other", "number"])
    assert report["accuracy"] == pytest.approx(1.9 / 4) and report["n"] == 4
    assert list(report["per_type"]) == ["yes/no", "number", "other"]
    assert report["per_type"]["number"] == {"accuracy": pytest.approx(0.45), "n": 2}
    assert report["per_type"]["yes/no"]["accuracy"] == 1.0 and report["per_type"]["other"]["accuracy"] == 0.0
    with pytest.raises(ValueError):
        vqa_score_report([1.0], [])


def test_dense_rows_and_batch_scores():
    assert dense_row({2: 0.6, 0: 1.0}, 4).tolist() == pytest.approx([1.0, 0.0, 0.6, 0.0])
    assert dense_row({}, 3).tolist() == [0.0, 0.0, 0.0] and dense_row({}, 3).dtype == np.float32
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    scores = torch.tensor([[0.0, 0.9, 1.0], [0.3, 1.0, 0.0]])
    assert batch_vqa_scores(logits, scores).tolist() == pytest.approx([0.9, 0.3])


# ----------------------------------------------------------------------------------------------
# losses


def _bce(z: float, t: float) -> float:
    s = 1 / (1 + math.exp(-z))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def test_vqa_bce_loss_by_hand():
    assert vqa_bce(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(2 * math.log(2))
    logits, targets = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.3, 0.0]])
    by_hand = (1.526928 + 0.313262) / 2 * 2  # -(0.3 log s(2) + 0.7 log s(-2)), -log s(1); mean x 2 answers
    assert _bce(2.0, 0.3) == pytest.approx(1.526928, abs=1e-6) and _bce(-1.0, 0.0) == pytest.approx(0.313262, abs=1e-6)
    assert vqa_bce(logits, targets).item() == pytest.approx(by_hand, abs=1e-5)


def test_vqa_bce_is_the_mean_times_the_number_of_answers():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(3, 7, generator=g), torch.rand(3, 7, generator=g)
    by_hand = sum(_bce(z, t) for z, t in zip(logits.flatten().tolist(), targets.flatten().tolist())) / 21 * 7
    assert vqa_bce(logits, targets).item() == pytest.approx(by_hand, rel=1e-5)


def test_soft_label_kd_multilabel_by_hand():
    three = soft_label_kd_multilabel(torch.zeros(1, 3), torch.zeros(1, 3)).item()
    assert three == pytest.approx(3 * math.log(2))  # targets sigmoid(0) = 0.5: log 2 per answer, x 3 answers
    one = soft_label_kd_multilabel(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item()
    assert one == pytest.approx(0.5 * (0.313262 + 1.313262), abs=1e-5)
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    pairs = zip(s.flatten().tolist(), t.sigmoid().flatten().tolist())
    assert soft_label_kd_multilabel(s, t).item() == pytest.approx(sum(_bce(z, p) for z, p in pairs) / 14 * 7, rel=1e-5)


def test_soft_label_kd_multilabel_trains_the_student_only():
    s, t = torch.randn(2, 5, requires_grad=True), torch.randn(2, 5, requires_grad=True)
    soft_label_kd_multilabel(s, t).backward()
    assert s.grad is not None and t.grad is None
    # its minimum over the student is at the teacher's logits
    grad = torch.autograd.functional.jacobian(lambda x: soft_label_kd_multilabel(x, t.detach()), t.detach())
    assert grad.abs().max() < 1e-6


def test_one_copy_of_the_vqa_losses():
    """The VQA losses are `workbench.losses`'s (every loss lives there); `workbench.vqa_score` re-exports them."""
    from workbench import losses, vqa_score

    assert vqa_score.vqa_bce is losses.vqa_bce
    assert vqa_score.soft_label_kd_multilabel is losses.soft_label_kd_multilabel
    assert not hasattr(vqa_score, "vqa_bce_loss")
