"""A small BERT WordPiece tokenizer for our datasets.

The BERT uncased vocabulary has 30,522 entries: as a 128-wide embedding table that is 15 MB,
more than the rest of a default model. Our questions use about a hundred words, so the default
checkpoints carry a vocabulary of those words plus single characters and `##` continuations
(any other word still tokenizes, letter by letter, instead of becoming [UNK]).

A run on reworded text (`TrainConfig.paraphrase`) builds its tokenizer with `paraphrase=True`: the same
vocabulary, then the words of the reworded templates (`workbench.data.paraphrase.vocabulary`: every family's,
train and held-out, of every dataset) it lacks, appended, so every token id of the default vocabulary stays what
it was. The default vocabulary is unchanged: the shipped checkpoints carry it, `workbench rebuild` rebuilds
them with it, and a `--warm-start` from one of them needs this run's vocabulary to be its own.
"""

from __future__ import annotations

import re
import string

from transformers import BertTokenizer

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def corpus_words(paraphrase: bool = False) -> list[str]:
    """Every word our generators and easy-VQA's questions use, sorted; with `paraphrase`, also every word of the
    reworded templates (`workbench.data.paraphrase.vocabulary`)."""
    from workbench.data import shapes
    from workbench.data.paraphrase import vocabulary

    words: set[str] = set()
    for task in shapes.ShapesDataset.tasks:
        for split in ("train", "compositional"):
            ds = shapes.ShapesDataset(task, split, 600)
            for i in range(len(ds)):
                words.update(re.findall(r"[a-z]+", ds[i].text))
    words.update(" ".join([*shapes.COLOURS, *shapes.SHAPES, *shapes.SIZES, *shapes.VQA_ANSWERS]).split())
    try:
        import easy_vqa

        for qs in (easy_vqa.get_train_questions()[0], easy_vqa.get_test_questions()[0]):
            for q in qs:
                words.update(re.findall(r"[a-z]+", q.lower()))
    except ImportError:  # pragma: no cover - easy-vqa is a dependency; stay usable without it
        pass
    if paraphrase:
        words.update(vocabulary())
    return sorted(words)


def build_tokenizer(paraphrase: bool = False) -> BertTokenizer:
    """The workbench's tokenizer; `paraphrase`: the reworded templates' words appended (module docstring)."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = SPECIAL + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in corpus_words() if w not in vocab]
    if paraphrase:  # = corpus_words(paraphrase=True) after the default vocabulary, without rendering it twice
        from workbench.data.paraphrase import vocabulary

        known = set(vocab)
        vocab += [w for w in vocabulary() if w not in known]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.model_max_length = 64
    return tok
