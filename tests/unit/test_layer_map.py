"""DiDE's teacher -> student layer pairing (`workbench.methods.layer_map`): today's `layers` behaviour where it is
valid, explicit maps, and a clear error for every impossible pairing."""

import pytest

from workbench.methods.layer_map import LayerMapError, parse_entry, resolve

DEPTHS = dict(teacher_depth=4, text_depth=4, image_depth=4)
FAST = dict(teacher_depth=4, text_depth=1, image_depth=4)  # the shipped fast student: a one-layer text tower


def test_layers_pair_the_ith_layer_of_each_model_counted_per_model():
    assert resolve((), (-1,), **DEPTHS) == ((3, 3, 3),)
    assert resolve((), (0, 1, 2, 3), **DEPTHS) == ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3))
    # -1 is each model's last: the one-layer text tower's layer 0 with the image tower's layer 3
    assert resolve((), (-1,), **FAST) == ((3, 0, 3),)
    assert resolve((), (-2, -1), teacher_depth=6, text_depth=2, image_depth=3) == ((4, 0, 1), (5, 1, 2))


def test_an_explicit_map_names_each_pair_in_both_forms():
    assert resolve(("3:0:3",), **FAST) == ((3, 0, 3),)
    assert resolve(("0:0", "-1:-1"), **DEPTHS) == ((0, 0, 0), (3, 3, 3))
    assert resolve(((2, 1), (3, 0, 2)), **DEPTHS) == ((2, 1, 1), (3, 0, 2))
    # one text layer may learn from several teacher layers against different image layers
    assert resolve(("0:0:0", "1:0:1", "2:0:2", "3:0:3"), **FAST) == ((0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 0, 3))
    assert parse_entry("-1:0:-1") == (-1, 0, -1)


def test_layers_beyond_the_text_tower_are_an_error_not_silently_dropped():
    """The review's case: --layers 0 1 2 3 with --text-layers 1 used to distil teacher layer 0 only."""
    with pytest.raises(LayerMapError, match=r"student text-tower layer 1 does not exist; it has 1 layer \(0, or -1\)"):
        resolve((), (0, 1, 2, 3), **FAST)


def test_a_teacher_layer_beyond_the_teachers_depth_is_an_error():
    with pytest.raises(LayerMapError, match=r"'4:3': teacher layer 4 does not exist; it has 4 layers \(0\.\.3"):
        resolve(("4:3",), **DEPTHS)
    with pytest.raises(LayerMapError, match="teacher layer -5 does not exist"):
        resolve(("-5:0",), **DEPTHS)


def test_an_image_layer_beyond_the_image_towers_depth_is_an_error():
    with pytest.raises(LayerMapError, match="student image-tower layer 4 does not exist; it has 3 layers"):
        resolve(("3:0:4",), teacher_depth=4, text_depth=1, image_depth=3)


def test_two_teacher_layers_into_the_same_student_layers_is_an_error():
    with pytest.raises(LayerMapError, match=r"\(text 3, image 3\) are paired twice \(teacher layers 2 and 3\)"):
        resolve(("2:3", "3:-1"), **DEPTHS)
    with pytest.raises(LayerMapError, match="paired twice"):
        resolve((), (-1, 3), **DEPTHS)  # -1 and 3 are the same layer here


@pytest.mark.parametrize("entry", ["3", "3:0:1:2", "a:b", "3-0", (1.5, 0), (True, 0)])
def test_a_malformed_entry_is_an_error(entry):
    with pytest.raises(LayerMapError, match="expected TEACHER:STUDENT"):
        resolve((entry,), **DEPTHS)


def test_layers_and_a_map_together_or_no_layer_at_all_are_errors():
    with pytest.raises(LayerMapError, match="give one"):
        resolve(("3:3",), (0, 1), **DEPTHS)
    with pytest.raises(LayerMapError, match="no distilled layers"):
        resolve((), (), **DEPTHS)
