"""`workbench explain-results` on tiny random models: both JSON files, their tables, the README sections."""

import json

import pytest
import torch

from workbench.data.shapes import VQA_ANSWERS
from workbench.explain.maps import METHODS
from workbench.explain.results import agreement_table, faithfulness_table, parse_students
from workbench.models import create_model
from workbench.models.io import save_checkpoint
from workbench.report import read_section, replace_section

SIZE = {"hidden_size": 32, "num_layers": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def written(tokenizer, tmp_path_factory):
    """Run the command once on a tiny teacher and two tiny students; return (folder, printed output)."""
    from workbench.cli import main

    tmp = tmp_path_factory.mktemp("explain-results")
    meta = {"task": "vqa", "labels": list(VQA_ANSWERS), "dataset": "shapes-vqa"}
    torch.manual_seed(0)
    save_checkpoint(create_model("fusion", len(tokenizer), len(VQA_ANSWERS), **SIZE), tokenizer, tmp / "t", meta)
    for name, recipe in (("a", "dide"), ("b", "none")):
        model = create_model("dual", len(tokenizer), len(VQA_ANSWERS), **SIZE)
        save_checkpoint(model, tokenizer, tmp / name, {**meta, "recipe": recipe})
    argv = ["explain-results", "--teacher", str(tmp / "t"), "--students", f"a={tmp / 'a'}", f"b={tmp / 'b'}"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~240 tiny forwards per example: a second thread only adds contention
    try:
        assert main([*argv, "--size", "8", "--ig-steps", "2", "--out", str(tmp / "results"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return tmp / "results"


def test_faithfulness_json_has_every_method_and_random(written):
    res = json.loads((written / "faithfulness.json").read_text())
    assert res["settings"]["n"] == 8 and res["settings"]["ig_steps"] == 2 and res["settings"]["baseline"] == "mean"
    assert {"seed", "random_orders", "patch_size"} <= set(res["settings"])
    assert res["settings"]["curve_steps"] == "patch"  # one point per patch, as the shipped results were measured
    assert len(res["per_example"]["methods"]["ig"]["deletion"]) == 8
    assert res["seconds"] > 0 and res["machine"]["cpu"] and res["created"]
    assert set(res["methods"]) == set(METHODS)
    for entry in [*res["methods"].values(), res["random"]]:
        for key in ("deletion_auc", "insertion_auc"):
            assert 0 <= entry[key] <= 1, (key, entry)
    for m in METHODS:
        assert 0 <= res["methods"][m]["deletion_beats_random"] <= 1
        assert len(res["per_example"]["methods"][m]["deletion"]) == 8


def test_agreement_json_per_student_and_question_type(written):
    res = json.loads((written / "agreement.json").read_text())
    assert res["settings"]["n"] == 8 and res["settings"]["method"] == "attention"
    assert list(res["students"]) == ["a", "b"]
    for st in res["students"].values():
        assert st["overall"]["n"] == 8 and st["overall"]["kl"] >= 0 and -1 <= st["overall"]["spearman"] <= 1
        assert sum(t["n"] for t in st["per_type"].values()) == 8
        assert len(st["per_example"]) == 8
    assert st["recipe"] == "none"
    paired = res["paired"]["a vs b"]
    assert 0 <= paired["kl_lower_share"] <= 1 and 0 <= paired["spearman_higher_share"] <= 1


def test_tables_render_and_go_into_the_readme(written, tmp_path):
    faith = json.loads((written / "faithfulness.json").read_text())
    agree = json.loads((written / "agreement.json").read_text())
    f_table, a_table = faithfulness_table(faith), agreement_table(agree)
    assert "gradient-weighted relevancy" in f_table and "random order" in f_table
    assert f_table.count("\n|") == len(METHODS) + 2  # header rule, one row per method, random
    assert "`a` | dide" in a_table and "`b` | none" in a_table and "Paired, `a vs b`" in a_table
    for q in agree["students"]["a"]["per_type"]:
        assert f"{q}: KL / ρ" in a_table
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- faithfulness:start -->\nold\n<!-- faithfulness:end -->\n\n"
        "<!-- agreement:start -->\n<!-- agreement:end -->\ntail\n"
    )
    assert replace_section(readme, "faithfulness", f_table) and replace_section(readme, "agreement", a_table)
    text = readme.read_text()
    assert read_section(text, "faithfulness") == f_table and read_section(text, "agreement") == a_table
    assert text.endswith("tail\n") and "old" not in text


def test_parse_students():
    assert parse_students(None) == {"dide": "assets/shapes-vqa-student", "none": "assets/shapes-vqa-student-none"}
    assert parse_students(["x=a/b", "y=c=d"]) == {"x": "a/b", "y": "c=d"}
    with pytest.raises(ValueError):
        parse_students(["nopath"])
