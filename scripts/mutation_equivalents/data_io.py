"""Equivalent mutants of the data_io modules (see common.py for the format): `data.shapes.questions`, `models.io`
and `evaluate`. Each reason says why no input the code accepts tells the mutant from the code."""

RULES: list[tuple[str, str, str, str]] = [
    # (regex on the function, on the old line, on the new line, why the mutant is equivalent)
    (
        r"export_rows|write_json_atomic",
        r"indent=2",
        r"json\.dumps\(rows, allow_nan=True\)|json\.dump\(data, f, \)",
        "JSON whitespace (`indent` left out): every reader parses the same object",
    ),
    (r"compare_models", r'float\("nan"\)', r'float\("NAN"\)', 'float("NAN") is float("nan"): a NaN either way'),
]

_FALLBACK = (
    "the renamed kind is drawn from the same place and, matching no `if`, asks the question the function falls "
    "back to, which is the one this kind asks: the same text and answer"
)

EQUIVALENT: dict[str, str] = {
    # data.shapes.questions
    "workbench.data.shapes.questions.x__relation_question__mutmut_28": "`ka <= kb` for `ka < kb`: the axis is drawn "
    "among those the two objects differ on, so ka == kb never happens",
    "workbench.data.shapes.questions.x_vqa_question__mutmut_12": f'attribute kind "XXsizeXX" for "size": {_FALLBACK}',
    "workbench.data.shapes.questions.x_vqa_question__mutmut_13": f'attribute kind "SIZE" for "size": {_FALLBACK}',
    "workbench.data.shapes.questions.x_vqa_question__mutmut_66": f'counting kind "XXallXX" for "all": {_FALLBACK}',
    "workbench.data.shapes.questions.x_vqa_question__mutmut_67": f'counting kind "ALL" for "all": {_FALLBACK}',
    "workbench.data.shapes.questions.x_vqa_question__mutmut_136": 'comparison kind "XXsame sizeXX" for "same size": '
    f"{_FALLBACK}",
    "workbench.data.shapes.questions.x_vqa_question__mutmut_137": f'comparison kind "SAME SIZE" for "same size": '
    f"{_FALLBACK}",
    "workbench.data.shapes.questions.x_vqa_question__mutmut_119": "the grid of the two-object scene made for a "
    "focused relation question: `_relation_question` reads only its objects",
    "workbench.data.shapes.questions.x_vqa_question__mutmut_121": "the same, with the grid left to its default",
    "workbench.data.shapes.questions.x_vqa_question__mutmut_163": "`x <= y` for `x < y` among the shape pairs: x == y "
    "has equal counts, which the other condition of the pair excludes",
    "workbench.data.shapes.questions.x_vqa_question__mutmut_172": "`>=` for `>` between the counts of the two shapes: "
    "only pairs of different counts are drawn",
    "workbench.data.shapes.questions.x_ve_hypothesis__mutmut_4": "`hidden = 2` for 1: `hidden` is only read as a "
    "truth value (`if hidden`, `bool(hidden)`)",
    # models.io
    "workbench.models.io.x__check_meta__mutmut_10": "the default `num_images` 2 for 1 in the type check: both pass "
    "it (1 or 2), and the value is read nowhere else",
    "workbench.models.io.x__build__mutmut_15": "`init_positions=None` for False: FusionTeacher tests `if "
    "init_positions`",
    "workbench.models.io.x__load_tokenizer__mutmut_15": 'the missing `tokenizer_class` read as "XXXX" for "": '
    'neither starts with "BertTokenizer", so AutoTokenizer loads either way',
    "workbench.models.io.x__load_tokenizer__mutmut_16": 'no tokenizer_config.json read as class "XXXX" for "": '
    'neither starts with "BertTokenizer", so AutoTokenizer loads either way',
    "workbench.models.io.x__load_weights_into__mutmut_46": "the `position_ids` suffix of the missing keys: with "
    "transformers >= 4.57 (pyproject.toml) every `position_ids` buffer is non-persistent, outside the state dict, "
    "so no missing key ends with it",
    "workbench.models.io.x__load_weights_into__mutmut_47": "the same (`POSITION_IDS`)",
}
