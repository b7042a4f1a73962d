"""The Attention tab's table of measured agreement (`workbench.app.agreement_table`), from a hand-made agreement file:
every cell is the file's figure, the trained quantity's row is the one marked, and a missing or malformed file gives
one line instead of a table."""

import json

import pytest

from workbench.app.agreement_table import TITLE, TRAINED_MARK, agreement_section
from workbench.explain.agreement import read_agreement
from workbench.explain.results import AGREEMENT_LABELS, TRAINED_MAP


def _overall(rho):
    return {"overall": {"kl": 0.5, "spearman": rho, "n": 3}}


AGREEMENT = {
    "teacher": "assets/t",
    "dataset": "shapes-vqa",
    "split": "test",
    "settings": {"n": 3, "maps": ["attention", "rollout"]},
    "students": {
        "a": {"overall": {"spearman": 0.5}, "maps": {"attention": _overall(0.5), "rollout": _overall(0.3)}},
        "b": {"overall": {"spearman": 0.125}, "maps": {"attention": _overall(0.125), "rollout": _overall(-0.1)}},
        # a file from before the functional maps: its attention figures only, at the top level
        "c": {"overall": {"spearman": 0.9}},
    },
    "paired": {
        "a vs b": {"maps": {"attention": {"spearman_p_value": 0.0004}, "rollout": {"spearman_p_value": 0.25}}},
        "a vs c": {"maps": {"attention": {"spearman_p_value": None}}},
    },
}


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def _write(tmp_path, content) -> str:
    path = tmp_path / "agreement.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_the_table_shows_each_students_mean_rho_and_the_paired_p_values(tmp_path):
    label, text = agreement_section(_write(tmp_path, AGREEMENT))
    assert label == f"{TITLE} (3 test examples)"
    header, rule, attention, rollout = _rows(text)
    assert header == ["map (teacher vs student)", "ρ `a`", "ρ `b`", "ρ `c`", "p, `a vs b`", "p, `a vs c`"]
    assert rule == ["---", "---:", "---:", "---:", "---:", "---:"]
    assert attention == [f"{AGREEMENT_LABELS['attention']} {TRAINED_MARK}", "0.500", "0.125", "0.900", "< 0.001", "n/a"]
    assert rollout == [AGREEMENT_LABELS["rollout"], "0.300", "-0.100", "n/a", "0.250", "n/a"]
    assert "first 3 shapes-vqa test examples" in text and "`assets/t`" in text


def test_only_the_trained_quantitys_row_is_marked_and_the_note_says_what_it_is(tmp_path):
    _, text = agreement_section(_write(tmp_path, AGREEMENT))
    marked = [row[0] for row in _rows(text)[2:] if TRAINED_MARK in row[0]]
    assert marked == [f"{AGREEMENT_LABELS[TRAINED_MAP]} {TRAINED_MARK}"] and TRAINED_MAP == "attention"
    note = next(line for line in text.splitlines() if line.startswith(TRAINED_MARK))
    assert "virtual cross-attention" in note and "takes no part in the student's answer" in note
    assert "not evidence of where the student looks" in note and "Rollout, relevancy and Integrated Gradients" in note


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "is missing"),
        ("not json {", "malformed (not JSON"),
        ({"students": {}}, 'malformed (no "students")'),
        ({"students": {"a": {"overall": {"spearman": "high"}}}}, "malformed (student 'a' has no overall Spearman)"),
        ({"students": {"a": {"overall": {"spearman": 0.5}}}, "paired": []}, 'malformed ("paired" is not a dict)'),
    ],
    ids=["missing", "not-json", "no-students", "text-for-a-number", "paired-a-list"],
)
def test_a_missing_or_malformed_file_gives_one_line(tmp_path, content, words):
    path = str(tmp_path / "agreement.json") if content is None else _write(tmp_path, content)
    label, text = agreement_section(path)
    assert label == TITLE
    assert words in text and path in text and "\n" not in text and "|" not in text


def test_read_agreement_returns_the_files_dict_or_says_what_is_wrong(tmp_path):
    assert read_agreement(_write(tmp_path, AGREEMENT)) == json.loads(json.dumps(AGREEMENT))
    with pytest.raises(FileNotFoundError):
        read_agreement(tmp_path / "absent.json")
    with pytest.raises(ValueError, match="no overall Spearman"):
        read_agreement(_write(tmp_path, {"students": {"a": {"maps": {"rollout": {"overall": None}}}}}))
