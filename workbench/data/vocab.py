"""A small BERT WordPiece tokenizer for our datasets.

The BERT uncased vocabulary has 30,522 entries: as a 128-wide embedding table that is 15 MB,
more than the rest of a default model. Our questions use about a hundred words, so the default
checkpoints carry a vocabulary of those words plus single characters and `##` continuations
(any other word still tokenizes, letter by letter, instead of becoming [UNK]).
"""

from __future__ import annotations

import re
import string

from transformers import BertTokenizer

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def corpus_words() -> list[str]:
    """Every word our generators and easy-VQA's questions use, sorted."""
    from workbench.data import shapes

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
    return sorted(words)


def build_tokenizer() -> BertTokenizer:
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = SPECIAL + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in corpus_words() if w not in vocab]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.model_max_length = 64
    return tok
