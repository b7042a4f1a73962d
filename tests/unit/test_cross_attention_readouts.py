"""`word_map`, `patch_words` and `question_map` read the right layer, head and words of a cross-attention dict.

The dict is built by hand with a distinct value in every cell (`arange`), so reading another layer, head, word or
cell gives another number; the expected maps are plain numpy indexing of that array, written out per case."""

import numpy as np
import pytest

from workbench.explain import patch_words, question_map, word_map

L, H, ROWS, COLS = 3, 2, 2, 3
LAYERS = [1, 3, 4]  # computed layers: position 0, 1, 2 (0 and 2 were not computed)


def _ca(tokens: list[str]) -> dict:
    t = len(tokens)
    return {
        "t2i": np.arange(L * H * t * ROWS * COLS, dtype=np.float64).reshape(L, H, t, ROWS, COLS) ** 1.5,
        "i2t": np.arange(L * H * ROWS * COLS * t, dtype=np.float64).reshape(L, H, ROWS, COLS, t) ** 1.5,
        "layers": list(LAYERS),
        "tokens": tokens,
    }


TOKENS = ["[CLS]", "what", "colour", "circle", "[SEP]"]


def test_word_map_reads_the_asked_head_or_the_head_mean():
    ca = _ca(TOKENS)
    np.testing.assert_array_equal(word_map(ca, "colour", layer=3, head=1), ca["t2i"][1, 1, 2])
    np.testing.assert_array_equal(word_map(ca, 3, layer=4, head=0), ca["t2i"][2, 0, 3])
    np.testing.assert_allclose(word_map(ca, "what", layer=1), (ca["t2i"][0, 0, 1] + ca["t2i"][0, 1, 1]) / 2)


def test_patch_words_reads_the_cell_of_the_asked_head():
    ca = _ca(TOKENS)
    np.testing.assert_array_equal(patch_words(ca, 1, 2, layer=-1, head=1), ca["i2t"][2, 1, 1, 2])
    np.testing.assert_array_equal(patch_words(ca, 0, 1, layer=3, head=0), ca["i2t"][1, 0, 0, 1])
    np.testing.assert_allclose(patch_words(ca, 1, 0, layer=1), ca["i2t"][0, :, 1, 0].mean(0))


@pytest.mark.parametrize(
    ("layer", "position"),
    [(1, 0), (3, 1), (4, 2), (-1, 2), (-2, 1), (-3, 0)],  # a computed layer, or a position from the end
)
def test_a_layer_is_a_computed_layer_or_a_position_from_the_end(layer, position):
    ca = _ca(TOKENS)
    np.testing.assert_array_equal(word_map(ca, 1, layer=layer, head=0), ca["t2i"][position, 0, 1])


@pytest.mark.parametrize("layer", [0, 2, 5, -4])
def test_a_layer_not_computed_is_refused_with_the_layers_there_are(layer):
    ca = _ca(TOKENS)
    with pytest.raises(ValueError, match=rf"^layer {layer} was not computed; have \[1, 3, 4\]$"):
        word_map(ca, 1, layer=layer)


def test_an_unknown_word_is_refused_with_the_tokens_of_the_question():
    ca = _ca(TOKENS)
    message = "'square' is not a token of the question; tokens: ['[CLS]', 'what', 'colour', 'circle', '[SEP]']"
    with pytest.raises(ValueError) as err:
        word_map(ca, "square")
    assert str(err.value) == message


def test_question_map_averages_the_words_between_cls_and_sep():
    ca = _ca(TOKENS)
    words = ca["t2i"][1][:, 1:4]  # layer 3 (position 1), words 1..3 of 5 tokens: [H, 3, rows, cols]
    np.testing.assert_allclose(question_map(ca, layer=3, head=1), words[1].mean(0))
    np.testing.assert_allclose(question_map(ca, layer=3), words.mean(1).mean(0))


@pytest.mark.parametrize(
    ("tokens", "words"),
    [
        (["[CLS]", "red", "[SEP]"], [1]),  # three tokens: the middle one
        (["[CLS]", "[SEP]"], [0, 1]),  # two or fewer: every token
        (["[CLS]"], [0]),
    ],
)
def test_question_map_of_a_short_question(tokens, words):
    ca = _ca(tokens)
    expected = ca["t2i"][2, 0][words].mean(0)
    np.testing.assert_allclose(question_map(ca, head=0), expected)
    assert np.isfinite(question_map(ca)).all()
