"""VQA answers: the training targets, the losses and the metric, as ViLT and the official VQA evaluation define them.

Training target (ViLT's `write_vqa.py`, which DiDE's code inherits). Each question has 10 human answers.
For every distinct answer string that n annotators gave and that is in the answer vocabulary, the target is

    score(n) = 0, 0.3, 0.6, 0.9, 1.0   for n = 0, 1, 2, 3, >= 4          (`answer_score`)

Answer strings are counted raw, as ViLT does (its vocabulary is normalised, the annotators' strings are not);
a question none of whose answers is in the vocabulary keeps an all-zero target row.

Metric (the official `vqaEval.py`): the accuracy of a predicted answer is the mean, over the 10 ways of
leaving one annotator out, of min(1, #remaining annotators who gave it / 3), after the official
normalisation (punctuation, number words, articles, contractions) of the prediction and the human answers
when the humans disagree (`vqa_accuracy`). It is reported overall and per answer type (yes/no, number,
other), as a mean over every question, including those whose answers are all outside the vocabulary.

The two are one formula. With 10 annotators, an answer n of them gave scores
(n * min(1, (n - 1) / 3) + (10 - n) * min(1, n / 3)) / 10 = 0, 0.3, 0.6, 0.9, 1 for n = 0, 1, 2, 3, >= 4:
ViLT's table is the official accuracy in closed form. The "min(1, n / 3)" often quoted for the VQA score
(and in our issue) is its one-line summary; it differs at n = 1 and 2 (1/3 and 2/3 against 0.3 and 0.6). We
use the table for the targets (as ViLT) and the leave-one-out mean for the metric (as the official code).
Where they differ in practice is normalisation only: the metric matches "two" to "2", the target does not.

The two VQA losses live with every other loss in `workbench.losses` (re-exported here): `vqa_bce` (ViLT's hard
loss: BCE on the soft targets, mean over batch x answers, times A) and `soft_label_kd_multilabel` (DiDE's VQA
soft loss: BCE of the student's logits against the teacher's sigmoids, times A).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from workbench.losses import soft_label_kd_multilabel, vqa_bce

ANSWER_TYPES = ("yes/no", "number", "other")
__all__ = [  # the losses are `workbench.losses`'s, re-exported beside the targets they train on
    "ANSWER_TYPES",
    "AnswerScorer",
    "answer_score",
    "batch_vqa_scores",
    "dense_row",
    "normalize_answer",
    "process_digit_article",
    "process_punctuation",
    "soft_label_kd_multilabel",
    "vilt_normalize",
    "vqa_accuracy",
    "vqa_bce",
    "vqa_score_report",
    "vqa_targets",
    "vqa_vocabulary",
]

# ----------------------------------------------------------------------------------------------
# the official normalisation (vqaEval.py), reproduced quirks included: the period pattern's "(?!<=\d)" is a
# look-ahead (not the look-behind it was meant to be), and `re.sub` received re.UNICODE (32) as its count

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = frozenset(("a", "an", "the"))
# the official table, "wrong=right" pairs (its "somebody'd=somebodyd" entry is reversed; kept as is)
_CONTRACTIONS = dict(
    pair.split("=")
    for pair in """
    aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
    couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
    hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd
    howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd itd've=it'd've
    it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've
    mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've
    oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't
    shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
    shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
    somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd
    someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's
    somethingd=something'd somethingd've=something'd've something'dve=something'd've somethingll=something'll
    thats=that's thered=there'd thered've=there'd've there'dve=there'd've therere=there're theres=there's
    theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've
    twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
    whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's whereve=where've
    whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's whove=who've whyll=why'll
    whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't wouldnt've=wouldn't've
    wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've
    y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've you'dve=you'd've youll=you'll
    youre=you're youve=you've
    """.split()
)


def process_punctuation(text: str) -> str:
    """vqaEval's `processPunctuation`: drop or space out punctuation, drop periods not before a digit."""
    out = text
    # a punctuation mark next to a space, or any "digit,digit" in the text, is deleted; otherwise spaced
    delete = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        out = out.replace(p, "" if delete or p + " " in text or " " + p in text else " ")
    return _PERIOD_STRIP.sub("", out, count=32)


def process_digit_article(text: str) -> str:
    """vqaEval's `processDigitArticle`: lower case, number words to digits, no articles, contractions fixed."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(text: str) -> str:
    """The official evaluation's normalisation of an answer (applied when the 10 humans disagree)."""
    return process_digit_article(process_punctuation(text))


def vilt_normalize(text: str) -> str:
    """ViLT's `normalize_word`, used to build its answer vocabulary: the official normalisation, commas removed."""
    return normalize_answer(text).replace(",", "")


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


# ----------------------------------------------------------------------------------------------
# targets and accuracy


def answer_score(count: int) -> float:
    """ViLT's target for an answer `count` of the 10 annotators gave (= its official accuracy)."""
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


def vqa_targets(answers: Iterable[str] | Mapping[str, int], index: Mapping[str, int]) -> dict[int, float]:
    """{answer index: ViLT target} over the raw answer strings that are in the vocabulary `index`
    (`answers`: the annotators' strings, or {string: how many gave it})."""
    counts = answers if isinstance(answers, Mapping) else Counter(answers)
    return {index[a]: answer_score(n) for a, n in counts.items() if a in index}


def _accuracy_from_counts(matches: int, n_annotators: int) -> float:
    """Mean over leaving each annotator out of min(1, matches among the others / 3)."""
    if n_annotators == 0:
        return 0.0
    left_out_match = matches * min(1.0, (matches - 1) / 3) if matches else 0.0
    left_out_other = (n_annotators - matches) * min(1.0, matches / 3)
    return (left_out_match + left_out_other) / n_annotators


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one predicted answer against the human answers (in [0, 1])."""
    answers = [_clean(a) for a in answers]
    prediction = _clean(prediction)
    if len(set(answers)) > 1:
        answers = [normalize_answer(a) for a in answers]
        prediction = normalize_answer(prediction)
    return _accuracy_from_counts(sum(a == prediction for a in answers), len(answers))


class AnswerScorer:
    """The official accuracy of every answer of a vocabulary at once: `scores(answers)` is
    {label index: vqa_accuracy(labels[index], answers)} for the labels that score above zero."""

    def __init__(self, labels: Sequence[str]):
        self.raw: dict[str, list[int]] = {}
        self.normalised: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            self.raw.setdefault(_clean(label), []).append(i)
            self.normalised.setdefault(normalize_answer(_clean(label)), []).append(i)
        # answers repeat ("yes", "2"...): clean and normalise each distinct string once
        self._memo: dict[str, tuple[str, str]] = {}

    def _forms(self, text: str) -> tuple[str, str]:
        forms = self._memo.get(text)
        if forms is None:
            clean = _clean(text)
            forms = self._memo[text] = (clean, normalize_answer(clean))
        return forms

    def scores(self, answers: Sequence[str]) -> dict[int, float]:
        return self.scores_from_counts(Counter(answers))

    def scores_from_counts(self, counts: Mapping[str, int]) -> dict[int, float]:
        """`scores` from {raw answer string: number of annotators who gave it}."""
        forms = {a: self._forms(a) for a in counts}
        cleaned: Counter[str] = Counter()
        for a, n in counts.items():
            cleaned[forms[a][0]] += n
        if len(cleaned) > 1:  # the humans disagree: the official code normalises every answer
            matched, lookup = Counter(), self.normalised
            for a, n in counts.items():
                matched[forms[a][1]] += n
        else:
            matched, lookup = cleaned, self.raw
        total, out = sum(counts.values()), {}
        for answer, n in matched.items():
            for i in lookup.get(answer, ()):
                out[i] = _accuracy_from_counts(n, total)
        return out


def vqa_vocabulary(multiple_choice_answers: Iterable[str], min_count: int = 9) -> tuple[str, ...]:
    """ViLT's answer vocabulary: the normalised `multiple_choice_answer`s given at least `min_count` times
    (ViLT counts train + val: 3,129 answers), in order of first appearance."""
    counts = Counter(vilt_normalize(a) for a in multiple_choice_answers)
    return tuple(a for a, n in counts.items() if n >= min_count)


def dense_row(sparse: Mapping[int, float], num_labels: int) -> np.ndarray:
    """A {label index: value} row as a float32 vector of `num_labels` (zeros elsewhere)."""
    row = np.zeros(num_labels, dtype=np.float32)
    if sparse:
        row[list(sparse)] = list(sparse.values())
    return row


def vqa_score_report(scores: Sequence[float], answer_types: Sequence[str]) -> dict:
    """{"accuracy", "n", "per_type": {answer type: {"accuracy", "n"}}}: the mean VQA accuracy (a fraction; the
    official tool prints 100 x it, to 2 decimals) overall and per answer type, over every question given."""
    if len(scores) != len(answer_types):
        raise ValueError(f"{len(scores)} scores but {len(answer_types)} answer types")
    groups: dict[str, list[float]] = {}
    for s, t in zip(scores, answer_types):
        groups.setdefault(t, []).append(float(s))
    order = [t for t in ANSWER_TYPES if t in groups] + sorted(t for t in groups if t not in ANSWER_TYPES)
    return {
        "accuracy": float(np.mean(scores)) if len(scores) else 0.0,
        "n": len(scores),
        "per_type": {t: {"accuracy": float(np.mean(groups[t])), "n": len(groups[t])} for t in order},
    }


def batch_vqa_scores(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """[B] official accuracy of each example's top answer, from its dense per-answer accuracies [B, A]."""
    return scores.gather(1, logits.argmax(-1, keepdim=True))[:, 0]
