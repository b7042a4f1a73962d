"""`workbench.evaluate` edges, with a model that records what it is asked: a comparison is quiet unless asked for a
progress bar, a dataset with no `tags` at all is scored like one without finer tags, and a student reading its own
batches (`student_collator`) sees the same first `limit` examples as the teacher, batch for batch."""

import torch
from PIL import Image
from torch import nn

from workbench.data.collate import Collator
from workbench.data.example import Example
from workbench.evaluate import compare_models, evaluate

LABELS = ["no", "yes"]
TEXTS = ["is there a red circle", "is there a blue square", "is there a green triangle", "is there a cyan circle",
         "is there a red square", "is there a blue circle", "is there a purple square"]  # fmt: skip
GOLD = [1, 0, 1, 1, 0, 0, 1]
ANSWER = [1, 1, 1, 0, 0, 1, 1]  # the model's answers: right on 0, 2, 4, 6


class Plain:
    """A dataset with `labels`, `__len__` and `__getitem__` only: no `tags` attribute at all."""

    def __init__(self):
        image = Image.new("RGB", (8, 8), "white")
        self.labels = LABELS
        self.examples = [Example([image], t, g, "existence", {}) for t, g in zip(TEXTS, GOLD)]

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


class Recording(nn.Module):
    """Answers each known text with its scripted label (logit 4) and records the size of every batch it is given."""

    def __init__(self, tokenizer):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.by_ids = {tuple(tokenizer(t)["input_ids"]): a for t, a in zip(TEXTS, ANSWER)}
        self.batch_sizes = []

    def forward(self, input_ids, attention_mask, pixel_values, **_):
        self.batch_sizes.append(len(input_ids))
        logits = torch.zeros(len(input_ids), len(LABELS))
        for i, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
            logits[i, self.by_ids[tuple(ids[mask.bool()].tolist())]] = 4.0
        return type("Out", (), {"logits": logits + self.weight})()


def test_a_dataset_without_a_tags_attribute_is_scored_without_per_tag(tokenizer):
    data = Plain()
    assert not hasattr(data, "tags")
    metrics = evaluate(Recording(tokenizer), data, Collator(tokenizer, image_size=8), batch_size=3)
    assert metrics == {"accuracy": 4 / 7, "n": 7, "per_type": {"existence": {"accuracy": 4 / 7, "n": 7}}}


def test_a_comparison_shows_no_progress_bar_unless_asked(tokenizer, capsys):
    collator = Collator(tokenizer, image_size=8)
    rows = compare_models(Recording(tokenizer), Recording(tokenizer), Plain(), collator, agreement=None, batch_size=3)
    assert len(rows) == 7 and all(r["agree"] for r in rows)
    assert capsys.readouterr().err == ""
    compare_models(Recording(tokenizer), Recording(tokenizer), Plain(), collator, agreement=None, batch_size=3,
                   progress=True)  # fmt: skip
    assert "compare: 100%" in capsys.readouterr().err  # the bar the default leaves out


def test_a_student_with_its_own_collator_reads_only_the_first_limit_examples(tokenizer):
    teacher, student = Recording(tokenizer), Recording(tokenizer)
    rows = compare_models(teacher, student, Plain(), Collator(tokenizer, image_size=8), limit=5, batch_size=3,
                          agreement=None, student_collator=Collator(tokenizer, image_size=16))  # fmt: skip
    assert teacher.batch_sizes == [3, 2] and student.batch_sizes == [3, 2]
    assert [r["text"] for r in rows] == TEXTS[:5]
    assert [r["student_answer"] for r in rows] == [LABELS[a] for a in ANSWER[:5]]
    assert [r["student_correct"] for r in rows] == [True, False, True, False, True]
