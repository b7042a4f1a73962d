"""`workbench paraphrase-results`: the shipped checkpoints on test vs its held-out rewording.

* the published file is reproducible: one checkpoint re-measured with `evaluate` on both splits gives its numbers;
* the command writes the JSON and the docs section, and the section is the table of the JSON;
* docs/results.md shows the table of the shipped `assets/results/paraphrase.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.data.paraphrase import EASY_VQA
from workbench.paraphrase_results import DEFAULT_CHECKPOINTS, paraphrase_table, readme_table
from workbench.report import read_section

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "assets" / "results" / "paraphrase.json"


def shipped() -> dict:
    return json.loads(RESULTS.read_text())


def test_results_page_shows_the_table_of_the_shipped_file():
    page = (ROOT / "docs" / "results.md").read_text()
    assert read_section(page, "paraphrase") == paraphrase_table(shipped()).strip()


def test_shipped_file_covers_every_teacher_and_student_on_both_splits():
    results = shipped()
    rows = {r["checkpoint"]: r for r in results["checkpoints"]}
    assert tuple(rows) == DEFAULT_CHECKPOINTS
    for row in rows.values():
        test, reworded = row["test"], row["test-paraphrase"]
        assert test["n"] == reworded["n"] == results["settings"]["size"] >= 1000
        assert row["ratio"] == pytest.approx(reworded["accuracy"] / test["accuracy"])
        per_template = reworded["per_template"].values()
        assert sum(m["n"] for m in per_template) == reworded["n"]
        right = sum(m["accuracy"] * m["n"] for m in per_template)
        assert right == pytest.approx(reworded["accuracy"] * reworded["n"])


def test_a_checkpoint_re_measured_gives_the_published_numbers():
    from workbench.data import Collator, load_dataset
    from workbench.evaluate import evaluate
    from workbench.models.io import load_checkpoint

    results = shipped()
    row = next(r for r in results["checkpoints"] if r["checkpoint"] == "shapes-nlvr-student")
    ck = load_checkpoint(ROOT / "assets" / "shapes-nlvr-student")
    size = results["settings"]["size"]
    for split in ("test", "test-paraphrase"):
        got = evaluate(ck.model, load_dataset("shapes-nlvr", split, size), Collator.for_checkpoint(ck))
        assert got["accuracy"] == row[split]["accuracy"]
        assert got["per_type"] == row[split]["per_type"]


def test_the_command_writes_the_json_and_the_section(tmp_path):
    from workbench.cli import main

    out, page = tmp_path / "paraphrase.json", tmp_path / "page.md"
    page.write_text(
        "before\n<!-- paraphrase:start -->\nold\n<!-- paraphrase:end -->\n<!-- reworded:start -->\n"
        "<!-- reworded:end -->\nafter\n"
    )
    argv = ["paraphrase-results", "--assets", str(ROOT / "assets"), "--checkpoints", "easy-vqa-teacher",
            "--size", "24", "--out", str(out), "--readme", str(page), "--summary", str(page),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads(out.read_text())
    (row,) = results["checkpoints"]
    assert (row["checkpoint"], row["dataset"], row["n"]) == ("easy-vqa-teacher", "easy-vqa", 24)
    assert set(row["test-paraphrase"]["per_template"]) <= {t for intent in EASY_VQA for t in intent.held_out}
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n")
    assert read_section(text, "paraphrase") == paraphrase_table(results).strip()
    assert read_section(text, "reworded") == readme_table(results).strip()
    assert "| easy-vqa | " in read_section(text, "reworded")


def test_the_shipped_file_measures_the_shipped_weights_all_trained_on_rewordings():
    from workbench.models.io import weights_fingerprint

    for row in shipped()["checkpoints"]:
        assert row["fingerprint"] == weights_fingerprint(ROOT / "assets" / row["checkpoint"]), row["checkpoint"]
        assert row["paraphrase_training"], row["checkpoint"]


# issue 29's acceptance: on the held-out wordings, each teacher and student keeps >= 95% of its test accuracy.
# A checkpoint listed here measured short of it (the strict xfail fails once a rebuild reaches the target).
SHORT_OF_TARGET: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=SHORT_OF_TARGET[n])) if n in SHORT_OF_TARGET else n
        for n in DEFAULT_CHECKPOINTS
    ],
)
def test_reworded_accuracy_is_at_least_95_percent_of_test_accuracy(name):
    from workbench.paraphrase_results import TARGET_RATIO

    row = next(r for r in shipped()["checkpoints"] if r["checkpoint"] == name)
    assert row["ratio"] >= TARGET_RATIO == 0.95


def test_the_table_says_which_checkpoints_trained_on_rewordings_miss_the_target():
    def row(name, ratio, trained):
        metrics = {"accuracy": 1.0, "per_type": {"q": {"accuracy": 1.0}}, "per_template": {}}
        reworded = {**metrics, "accuracy": ratio}
        return {"checkpoint": name, "dataset": "d", "kind": "fusion", "n": 10, "ratio": ratio,
                "paraphrase_training": trained, "test": metrics, "test-paraphrase": reworded}  # fmt: skip

    results = {"settings": {"size": 10}, "seconds": 6.0, "created": "2026-12-03",
               "machine": {"cpu": "cpu", "threads": 1}}  # fmt: skip
    table = paraphrase_table(
        {**results, "checkpoints": [row("a", 0.96, True), row("b", 0.9, True), row("c", 0.5, False)]}
    )
    assert "| `a` | d | fusion | yes | 10 |" in table and "| `c` | d | fusion | no | 10 |" in table
    assert "(ratio >= 0.95): not met by `b` 0.900 of the 2." in table
    table = paraphrase_table({**results, "checkpoints": [row("a", 0.95, True), row("c", 0.5, False)]})
    assert "met by every one of the 1." in table
    table = paraphrase_table({**results, "checkpoints": [row("c", 0.5, False)]})
    assert "No checkpoint here was trained on rewordings" in table
