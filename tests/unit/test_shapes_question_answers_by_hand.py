"""Every VQA question, entailment hypothesis and NLVR statement of the shapes world, asked about hand-built scenes
with every random draw scripted (`Script`): the exact text and answer of each form are derived by hand below, so a
changed word, comparison, branch or draw gives another string or answer.

The scenes sit on the 4 x 4 grid, (row, col) counted from the top left; each object has its own colour."""

import pytest

from workbench.data.shapes.questions import nlvr_statement, ve_hypothesis, vqa_question
from workbench.data.shapes.scenes import Obj, Scene


class Script:
    """A stand-in for `random.Random` whose draws are given in advance, one queue per method: `choice` takes the
    index of the element to pick (so a changed literal in the sequence shows), `sample` the indices of the
    elements, `random` the float to return; `randint(a, b)` returns b and records (a, b). A draw nobody scripted
    fails the test, and so does one left over (`done`)."""

    def __init__(self, choice=(), random=(), sample=()):
        self.queues = {"choice": list(choice), "random": list(random), "sample": list(sample)}
        self.randint_args = []

    def _next(self, kind):
        assert self.queues[kind], f"an unscripted rng.{kind}() call"
        return self.queues[kind].pop(0)

    def choice(self, seq):
        return list(seq)[self._next("choice")]

    def random(self):
        return self._next("random")

    def sample(self, population, k):
        picked = [list(population)[i] for i in self._next("sample")]
        assert len(picked) == k
        return picked

    def randint(self, a, b):
        self.randint_args.append((a, b))
        return b

    def done(self) -> bool:
        return not any(self.queues.values())


def obj(colour, shape, size, row, col):
    return Obj(shape=shape, colour=colour, size=size, row=row, col=col)


BLUE_CIRCLE = obj("blue", "circle", "small", 0, 1)
RED_SQUARE = obj("red", "square", "large", 2, 1)  # same column as the blue circle
GREEN_TRIANGLE = obj("green", "triangle", "small", 0, 3)  # same row as the blue circle
PURPLE_SQUARE = obj("purple", "square", "small", 3, 0)
# circles 1, squares 2, triangles 1; small 3, large 1
SCENE = Scene(objects=[BLUE_CIRCLE, RED_SQUARE, GREEN_TRIANGLE, PURPLE_SQUARE])


def ask(qtype, scene=SCENE, focus=None, **script):
    rng = Script(**script)
    out = vqa_question(scene, qtype, rng, focus=focus)
    assert rng.done(), "a scripted draw was not used"
    return out


# ---------------------------------------------------------------------------------------------- VQA: attribute
# draws: the target (index into the objects), then the kind ("size", "colour", "shape")


def test_attribute_colour_shape_and_size_questions():
    assert ask("attribute", choice=[0, 1]) == ("what colour is the circle?", "blue")  # the only circle
    assert ask("attribute", choice=[0, 2]) == ("what shape is the blue object?", "circle")
    assert ask("attribute", choice=[0, 0]) == ("what size is the blue circle?", "small")
    assert ask("attribute", choice=[1, 0]) == ("what size is the red square?", "large")


def test_attribute_colour_of_a_shape_seen_twice_asks_the_size_instead():
    assert ask("attribute", choice=[1, 1]) == ("what size is the red square?", "large")  # two squares


def test_attribute_shape_of_a_colour_seen_twice_asks_the_size_instead():
    twin = Scene(objects=[BLUE_CIRCLE, obj("blue", "square", "large", 3, 3)])  # not a generated scene: two blues
    assert ask("attribute", twin, choice=[0, 2]) == ("what size is the blue circle?", "small")
    assert ask("attribute", twin, choice=[0, 1]) == ("what colour is the circle?", "blue")


# ---------------------------------------------------------------------------------------------- VQA: existence
# draws: the target, then random() < 0.5 asks about an absent pair (drawn from the allowed pairs not in the scene)


def test_existence_of_the_target_is_yes():
    assert ask("existence", choice=[0], random=[0.5]) == ("is there a blue circle?", "yes")
    assert ask("existence", choice=[3], random=[0.9]) == ("is there a purple square?", "yes")


def test_existence_of_an_absent_pair_is_no():
    # the allowed pairs in (colour, shape) order, minus the held-out ones and the four in the scene: red triangle,
    # green circle, blue square, yellow square, yellow triangle, purple circle, ...
    assert ask("existence", choice=[0, 0], random=[0.2]) == ("is there a red triangle?", "no")
    assert ask("existence", choice=[0, 2], random=[0.2]) == ("is there a blue square?", "no")


def test_existence_on_the_compositional_split_asks_about_an_absent_held_out_pair():
    scene = Scene(objects=[obj("red", "circle", "small", 1, 1), obj("green", "triangle", "large", 0, 0)])
    # held out: red circle (present), blue triangle, green square, yellow circle
    assert ask("existence", scene, focus=("red", "circle"), choice=[0], random=[0.1]) == (
        "is there a blue triangle?",
        "no",
    )
    assert ask("existence", scene, focus=("red", "circle"), choice=[2], random=[0.1]) == (
        "is there a yellow circle?",
        "no",
    )
    assert ask("existence", scene, focus=("red", "circle"), random=[0.7]) == ("is there a red circle?", "yes")


# ---------------------------------------------------------------------------------------------- VQA: counting
# draws: the target, the kind ("size", "shape", "all"); for size / shape without a focus random() < 0.7 counts the
# target's, else a drawn size / shape


def test_counting_by_the_targets_size_or_a_drawn_one():
    assert ask("counting", choice=[0, 0], random=[0.1]) == ("how many small objects are there?", "3")
    assert ask("counting", choice=[0, 0, 1], random=[0.7]) == ("how many large objects are there?", "1")
    assert ask("counting", choice=[1, 0], random=[0.69]) == ("how many large objects are there?", "1")


def test_counting_by_the_targets_shape_or_a_drawn_one():
    assert ask("counting", choice=[0, 1], random=[0.1]) == ("how many circles are there?", "1")
    assert ask("counting", choice=[0, 1, 1], random=[0.7]) == ("how many squares are there?", "2")
    assert ask("counting", choice=[1, 1], random=[0.2]) == ("how many squares are there?", "2")


def test_counting_with_a_focus_counts_the_focused_objects_size_or_shape_without_a_draw():
    assert ask("counting", focus=("red", "square"), choice=[0]) == ("how many large objects are there?", "1")
    assert ask("counting", focus=("red", "square"), choice=[1]) == ("how many squares are there?", "2")
    assert ask("counting", focus=("blue", "circle"), choice=[0]) == ("how many small objects are there?", "3")


def test_counting_all_objects():
    assert ask("counting", choice=[0, 2]) == ("how many objects are there?", "4")


# ---------------------------------------------------------------------------------------------- VQA: position
# draws: the target, then random() < 0.5 asks the row, else the column (both counted from 1)


def test_position_row_and_column_count_from_one():
    assert ask("position", choice=[0], random=[0.2]) == ("which row is the blue circle in?", "1")
    assert ask("position", choice=[0], random=[0.5]) == ("which column is the blue circle in?", "2")
    assert ask("position", choice=[1], random=[0.49]) == ("which row is the red square in?", "3")
    assert ask("position", choice=[3], random=[0.99]) == ("which column is the purple square in?", "1")


# ---------------------------------------------------------------------------------------------- VQA: relation
# draws: the target; without a focus the two objects (sample) and the axis among those they differ on; with one,
# the other object, then the two in a drawn order, then the axis


def test_relation_further_left_is_the_smaller_column():
    # blue circle (col 1) and green triangle (col 3) share row 0: only the horizontal axis differs
    assert ask("relation", choice=[0, 0], sample=[[0, 2]]) == (
        "which is further left, the blue circle or the green triangle?",
        "blue",
    )
    assert ask("relation", choice=[0, 0], sample=[[2, 0]]) == (
        "which is further left, the green triangle or the blue circle?",
        "blue",
    )


def test_relation_higher_is_the_smaller_row():
    # blue circle (row 0) and red square (row 2) share column 1: only the vertical axis differs
    higher = "which is higher, the {} or the {}?"
    assert ask("relation", choice=[0, 0], sample=[[0, 1]]) == (higher.format("blue circle", "red square"), "blue")
    assert ask("relation", choice=[0, 0], sample=[[1, 0]]) == (higher.format("red square", "blue circle"), "blue")


def test_relation_between_objects_that_differ_on_both_axes_asks_the_drawn_axis():
    # red square (2, 1) and green triangle (0, 3): the red one is further left, the green one higher
    assert ask("relation", choice=[0, 0], sample=[[1, 2]]) == (
        "which is further left, the red square or the green triangle?",
        "red",
    )
    assert ask("relation", choice=[0, 1], sample=[[1, 2]]) == (
        "which is higher, the red square or the green triangle?",
        "green",
    )


def test_relation_with_a_focus_pairs_the_focused_object_with_another():
    # the others of the purple square (3, 0): blue circle, red square, green triangle; the pair is then drawn
    # from [purple square, other]
    assert ask("relation", focus=("purple", "square"), choice=[1, 1], sample=[[0, 1]]) == (
        "which is higher, the purple square or the red square?",
        "red",
    )
    assert ask("relation", focus=("purple", "square"), choice=[2, 1], sample=[[1, 0]]) == (
        "which is higher, the green triangle or the purple square?",
        "green",
    )


# ---------------------------------------------------------------------------------------------- VQA: comparison
# draws: the target, the other object (among the rest), the kind ("bigger", "same size", "more"); "bigger" of two
# sizes draws the order (random() < 0.5: target first); "more" draws a pair of shapes whose counts differ and
# random() < 0.5 swaps it; otherwise the same-size question


def test_bigger_names_the_large_one_in_either_order():
    # target blue circle (small), other red square (large)
    assert ask("comparison", choice=[0, 0, 0], random=[0.2]) == (
        "which is bigger, the blue circle or the red square?",
        "red",
    )
    assert ask("comparison", choice=[0, 0, 0], random=[0.5]) == (
        "which is bigger, the red square or the blue circle?",
        "red",
    )
    # target red square (large), other blue circle (small)
    assert ask("comparison", choice=[1, 0, 0], random=[0.1]) == (
        "which is bigger, the red square or the blue circle?",
        "red",
    )


def test_bigger_of_two_objects_of_one_size_asks_whether_they_are_the_same_size():
    # blue circle and green triangle: both small
    assert ask("comparison", choice=[0, 1, 0]) == ("are the blue circle and the green triangle the same size?", "yes")


def test_same_size_question_answers_yes_or_no():
    assert ask("comparison", choice=[0, 0, 1]) == ("are the blue circle and the red square the same size?", "no")
    assert ask("comparison", choice=[0, 2, 1]) == ("are the blue circle and the purple square the same size?", "yes")
    assert ask("comparison", choice=[3, 0, 1]) == ("are the purple square and the blue circle the same size?", "yes")


def test_more_common_shape_between_shapes_of_different_counts():
    # circles 1, squares 2, triangles 1: the pairs (in name order) whose counts differ are (circle, square) and
    # (square, triangle)
    assert ask("comparison", choice=[0, 0, 2, 0], random=[0.5]) == (
        "which shape is more common, circle or square?",
        "square",
    )
    assert ask("comparison", choice=[0, 0, 2, 0], random=[0.2]) == (
        "which shape is more common, square or circle?",
        "square",
    )
    assert ask("comparison", choice=[0, 0, 2, 1], random=[0.9]) == (
        "which shape is more common, square or triangle?",
        "square",
    )
    assert ask("comparison", choice=[0, 0, 2, 1], random=[0.3]) == (
        "which shape is more common, triangle or square?",
        "square",
    )


def test_more_common_without_shapes_of_different_counts_asks_the_same_size_question():
    scene = Scene(objects=[BLUE_CIRCLE, RED_SQUARE, GREEN_TRIANGLE])  # one of each shape
    assert ask("comparison", scene, choice=[0, 1, 2]) == (
        "are the blue circle and the green triangle the same size?",
        "yes",
    )


def test_an_unknown_question_type_is_refused_with_the_known_ones():
    with pytest.raises(ValueError) as e:
        vqa_question(SCENE, "colour", Script(choice=[0]))
    assert str(e.value) == (
        "unknown VQA question type 'colour'; expected one of "
        "('attribute', 'existence', 'counting', 'position', 'relation', 'comparison')"
    )


# ---------------------------------------------------------------------------------------------- visual entailment
# draws: the kind ("existence", "counting", "relation"); existence: the present object, random() < 0.5 negates,
# then an absent pair (hideable under the cloth: neutral; decided: entailment or contradiction); counting: the
# shape, randint(1, seen) (the script returns its upper end); relation: the pair (sample), the axis ("row",
# "column") and, when the pair does not give the wanted label, the second object among the matching ones

BLUE = obj("blue", "circle", "small", 0, 1)
RED = obj("red", "square", "large", 2, 1)  # the blue circle's column
GREEN = obj("green", "circle", "small", 0, 3)  # the blue circle's row
PURPLE = obj("purple", "square", "small", 3, 0)
# circles 2, squares 2, triangles 0; visible colours blue, red, green, purple; the cloth at (3, 3)
OCCLUDED = Scene(objects=[BLUE, RED, GREEN, PURPLE], occluder=(3, 3))
OPEN = Scene(objects=[BLUE, RED, GREEN, PURPLE])
# Allowed pairs absent from these scenes, in (colour, shape) order: red triangle, green triangle, blue square,
# yellow square, yellow triangle, purple circle, purple triangle, cyan circle, cyan square, cyan triangle.
# Under the cloth could be the absent pairs of a colour not visible: yellow square, yellow triangle, cyan circle,
# cyan square, cyan triangle. Decided (a visible colour): red triangle, green triangle, blue square, purple circle,
# purple triangle; without a cloth every absent pair is decided.


def hypothesis(scene, want, **script):
    rng = Script(**script)
    out = ve_hypothesis(scene, rng, want)
    assert out is None or rng.done(), "a scripted draw was not used"
    return out, rng


def test_existence_neutral_is_a_pair_that_could_hide_under_the_cloth():
    assert hypothesis(OCCLUDED, "neutral", choice=[0, 0, 0], random=[0.5])[0] == (
        "there is a yellow square.",
        "neutral",
        "existence",
    )
    assert hypothesis(OCCLUDED, "neutral", choice=[0, 0, 2], random=[0.2])[0] == (
        "there is no cyan circle.",
        "neutral",
        "existence",
    )


def test_existence_neutral_without_a_cloth_is_impossible():
    assert hypothesis(OPEN, "neutral", choice=[0, 0], random=[0.5])[0] is None


def test_existence_entailment_denies_an_absent_pair_or_asserts_a_present_object():
    assert hypothesis(OCCLUDED, "entailment", choice=[0, 1, 0], random=[0.2])[0] == (
        "there is no red triangle.",
        "entailment",
        "existence",
    )
    assert hypothesis(OCCLUDED, "entailment", choice=[0, 1, 4], random=[0.2])[0] == (
        "there is no purple triangle.",
        "entailment",
        "existence",
    )
    assert hypothesis(OCCLUDED, "entailment", choice=[0, 1], random=[0.5])[0] == (
        "there is a red square.",
        "entailment",
        "existence",
    )


def test_existence_without_a_cloth_every_absent_pair_is_decided():
    # the absent pairs, in order: red triangle, green triangle, blue square, yellow square, yellow triangle, purple
    # circle, ...
    assert hypothesis(OPEN, "entailment", choice=[0, 0, 5], random=[0.1])[0] == (
        "there is no purple circle.",
        "entailment",
        "existence",
    )
    assert hypothesis(OPEN, "entailment", choice=[0, 0, 3], random=[0.1])[0] == (
        "there is no yellow square.",
        "entailment",
        "existence",
    )


def test_existence_contradiction_asserts_an_absent_pair_or_denies_a_present_object():
    assert hypothesis(OCCLUDED, "contradiction", choice=[0, 3, 1], random=[0.5])[0] == (
        "there is a green triangle.",
        "contradiction",
        "existence",
    )
    assert hypothesis(OCCLUDED, "contradiction", choice=[0, 3], random=[0.2])[0] == (
        "there is no purple square.",
        "contradiction",
        "existence",
    )


def test_counting_entailment_draws_at_most_the_visible_count():
    out, rng = hypothesis(OCCLUDED, "entailment", choice=[1, 1])
    assert out == ("the number of squares is at least 2.", "entailment", "counting") and rng.randint_args == [(1, 2)]
    one = Scene(objects=[BLUE, RED], occluder=(3, 3))
    out, rng = hypothesis(one, "entailment", choice=[1, 0])
    assert out == ("the number of circles is at least 1.", "entailment", "counting") and rng.randint_args == [(1, 1)]


def test_counting_entailment_of_an_absent_shape_is_impossible():
    assert hypothesis(OCCLUDED, "entailment", choice=[1, 2])[0] is None


def test_counting_contradiction_counts_one_past_what_the_cloth_could_hide():
    # squares: 2 seen, one more could hide under the cloth (two colours are not visible): at least 4 is false
    assert hypothesis(OCCLUDED, "contradiction", choice=[1, 1])[0] == (
        "the number of squares is at least 4.",
        "contradiction",
        "counting",
    )
    assert hypothesis(OPEN, "contradiction", choice=[1, 1])[0] == (
        "the number of squares is at least 3.",
        "contradiction",
        "counting",
    )
    assert hypothesis(OCCLUDED, "contradiction", choice=[1, 2])[0] == (
        "the number of triangles is at least 2.",
        "contradiction",
        "counting",
    )


def test_counting_with_every_colour_visible_the_cloth_hides_nothing():
    six = [BLUE, RED, GREEN, PURPLE, obj("yellow", "triangle", "small", 1, 2), obj("cyan", "square", "large", 2, 3)]
    scene = Scene(objects=six, occluder=(3, 3))
    assert hypothesis(scene, "contradiction", choice=[1, 1])[0] == (
        "the number of squares is at least 4.",
        "contradiction",
        "counting",
    )
    assert hypothesis(scene, "neutral", choice=[1, 1])[0] is None


def test_counting_neutral_is_one_more_than_seen_when_the_cloth_could_hide_one():
    assert hypothesis(OCCLUDED, "neutral", choice=[1, 0])[0] == (
        "the number of circles is at least 3.",
        "neutral",
        "counting",
    )
    assert hypothesis(OCCLUDED, "neutral", choice=[1, 2])[0] == (
        "the number of triangles is at least 1.",
        "neutral",
        "counting",
    )
    assert hypothesis(OPEN, "neutral", choice=[1, 0])[0] is None


def test_relation_same_row_or_column_as_drawn():
    assert hypothesis(OCCLUDED, "entailment", choice=[2, 0], sample=[[0, 2]])[0] == (
        "the blue circle is in the same row as the green circle.",
        "entailment",
        "relation",
    )
    assert hypothesis(OCCLUDED, "entailment", choice=[2, 1], sample=[[0, 1]])[0] == (
        "the blue circle is in the same column as the red square.",
        "entailment",
        "relation",
    )
    assert hypothesis(OCCLUDED, "contradiction", choice=[2, 1], sample=[[0, 2]])[0] == (
        "the blue circle is in the same column as the green circle.",
        "contradiction",
        "relation",
    )


def test_relation_redraws_the_second_object_when_the_pair_gives_the_other_label():
    # contradiction on the blue circle's row (0): the pair drawn shares it, so the second object is drawn among
    # those off row 0: red square (2, 1), purple square (3, 0)
    assert hypothesis(OCCLUDED, "contradiction", choice=[2, 0, 0], sample=[[0, 2]])[0] == (
        "the blue circle is in the same row as the red square.",
        "contradiction",
        "relation",
    )
    assert hypothesis(OCCLUDED, "contradiction", choice=[2, 0, 1], sample=[[0, 2]])[0] == (
        "the blue circle is in the same row as the purple square.",
        "contradiction",
        "relation",
    )
    # entailment on the blue circle's column (1): the pair drawn does not share it; only the red square does
    assert hypothesis(OCCLUDED, "entailment", choice=[2, 1, 0], sample=[[0, 2]])[0] == (
        "the blue circle is in the same column as the red square.",
        "entailment",
        "relation",
    )
    # entailment on the purple square's row (3): nobody shares it
    assert hypothesis(OCCLUDED, "entailment", choice=[2, 0], sample=[[3, 0]])[0] is None


def test_relation_is_never_neutral():
    assert hypothesis(OCCLUDED, "neutral", choice=[2])[0] is None


# ---------------------------------------------------------------------------------------------- NLVR
# draws: the kind ("both", "exactly one", "more"), a colour (in COLOURS order: red, green, blue, yellow, purple,
# cyan) and a shape (circle, square, triangle)

LEFT = Scene(objects=[obj("red", "square", "small", 0, 0), obj("yellow", "square", "large", 1, 1), BLUE])
RIGHT = Scene(objects=[obj("red", "circle", "small", 2, 2), obj("green", "triangle", "large", 3, 3)])
# left: red, yellow, blue; squares 2, circles 1. right: red, green; circles 1, triangles 1.


def statement(kind, colour=0, shape=0):
    rng = Script(choice=[kind, colour, shape])
    out = nlvr_statement(LEFT, RIGHT, rng)
    assert rng.done()
    return out


def test_both_images_contain_a_colour():
    assert statement(0, colour=0) == ("both images contain a red object.", True, "both")
    assert statement(0, colour=1) == ("both images contain a green object.", False, "both")  # the right only
    assert statement(0, colour=2) == ("both images contain a blue object.", False, "both")  # the left only
    assert statement(0, colour=5) == ("both images contain a cyan object.", False, "both")


def test_exactly_one_image_contains_a_shape():
    assert statement(1, shape=0) == ("exactly one image contains a circle.", False, "exactly one")  # both
    assert statement(1, shape=1) == ("exactly one image contains a square.", True, "exactly one")  # the left
    assert statement(1, shape=2) == ("exactly one image contains a triangle.", True, "exactly one")  # the right


def test_the_left_image_contains_more_of_a_shape():
    assert statement(2, shape=1) == ("the left image contains more squares than the right image.", True, "more")
    assert statement(2, shape=0) == ("the left image contains more circles than the right image.", False, "more")
    assert statement(2, shape=2) == ("the left image contains more triangles than the right image.", False, "more")


def test_the_labels_are_booleans():
    for kind in range(3):
        for colour in range(6):
            for shape in range(3):
                assert type(statement(kind, colour, shape)[1]) is bool
