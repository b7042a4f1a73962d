"""`workbench explain-results` on tiny random models: both JSON files, their tables, the README sections."""

import json
from pathlib import Path

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


def test_agreement_json_has_the_functional_maps_beside_the_distilled_one(written):
    res = json.loads((written / "agreement.json").read_text())
    assert res["settings"]["maps"] == ["attention", "rollout", "relevancy", "ig"] and res["settings"]["ig_steps"] == 2
    a = res["students"]["a"]["maps"]
    for st in res["students"].values():
        assert list(st["maps"]) == res["settings"]["maps"]
        assert st["maps"]["attention"]["per_example"] == st["per_example"]  # the top level is the distilled map
        for entry in st["maps"].values():
            assert entry["overall"]["n"] == 8 and len(entry["per_example"]) == 8 and entry["seconds"] > 0
            assert entry["overall"]["kl"] >= 0 and -1 <= entry["overall"]["spearman"] <= 1
    assert set(res["paired"]["a vs b"]["maps"]) == set(res["settings"]["maps"])
    # the paired p-value is scipy's one-sample t-test of the per-example differences, worked here from the rows
    from scipy import stats

    b = res["students"]["b"]["maps"]
    diff = [x["spearman"] - y["spearman"] for x, y in zip(a["rollout"]["per_example"], b["rollout"]["per_example"])]
    rollout = res["paired"]["a vs b"]["maps"]["rollout"]
    assert rollout["spearman_p_value"] == pytest.approx(stats.ttest_1samp(diff, 0.0).pvalue, rel=1e-9)
    assert rollout["spearman_diff_mean"] == pytest.approx(sum(diff) / len(diff), abs=1e-12)
    # the functional maps are not the distilled one: a student's rollout agreement differs from its attention's
    assert a["rollout"]["overall"]["spearman"] != pytest.approx(a["attention"]["overall"]["spearman"], abs=1e-6)


def test_rollout_agreement_is_kl_and_spearman_of_the_two_rollout_maps(written, tokenizer):
    """Worked independently with scipy on the first example: the teacher's and the student's rollout maps."""
    from scipy import stats

    from workbench.data import Collator, load_dataset
    from workbench.explain.maps import image_maps
    from workbench.models.io import load_checkpoint

    res = json.loads((written / "agreement.json").read_text())
    teacher, student = load_checkpoint(written.parent / "t"), load_checkpoint(written.parent / "a")
    data = load_dataset("shapes-vqa", "test", 8, seed=0)
    batch = Collator.for_checkpoint(teacher)([data[0]])
    t_map = image_maps(teacher.model, batch, "rollout")[0].ravel().astype("float64")
    s_map = image_maps(student.model, batch, "rollout")[0].ravel().astype("float64")
    row = res["students"]["a"]["maps"]["rollout"]["per_example"][0]
    p, q = (t_map + 1e-8) / (t_map + 1e-8).sum(), (s_map + 1e-8) / (s_map + 1e-8).sum()
    assert row["kl"] == pytest.approx(float(stats.entropy(p, q)), rel=1e-4, abs=1e-7)
    assert row["spearman"] == pytest.approx(float(stats.spearmanr(t_map, s_map).statistic), abs=1e-6)


def test_only_agreement_leaves_the_faithfulness_file_alone(written, tmp_path):
    from workbench.cli import main

    tmp = written.parent
    argv = ["explain-results", "--teacher", str(tmp / "t"), "--students", f"a={tmp / 'a'}", "--only", "agreement"]
    argv += ["--maps", "attention", "rollout", "--size", "4", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert not (tmp_path / "faithfulness.json").exists()
    res = json.loads((tmp_path / "agreement.json").read_text())
    assert (
        res["settings"]["maps"] == ["attention", "rollout"]
        and list(res["students"]["a"]["maps"]) == res["settings"]["maps"]
    )


def test_tables_render_and_go_into_the_readme(written, tmp_path):
    faith = json.loads((written / "faithfulness.json").read_text())
    agree = json.loads((written / "agreement.json").read_text())
    f_table, a_table = faithfulness_table(faith), agreement_table(agree)
    assert "gradient-weighted relevancy" in f_table and "random order" in f_table
    assert f_table.count("\n|") == len(METHODS) + 2  # header rule, one row per method, random
    assert "`a` | dide" in a_table and "`b` | none" in a_table and "Paired, `a vs b`" in a_table
    for q in agree["students"]["a"]["per_type"]:
        assert f"{q}: KL / ρ" in a_table
    # one row per map and student, the distilled map named as what `dide` trains, and the note says so
    assert a_table.count("| virtual cross-attention (trained by `dide`) | `") == 2
    for label in ("attention rollout", "gradient-weighted relevancy", "Integrated Gradients"):
        assert a_table.count(f"| {label} | `") == 2 and f"Paired, `a vs b`, {label}:" in a_table
    assert "the training objective read back" in a_table
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- faithfulness:start -->\nold\n<!-- faithfulness:end -->\n\n"
        "<!-- agreement:start -->\n<!-- agreement:end -->\ntail\n"
    )
    assert replace_section(readme, "faithfulness", f_table) and replace_section(readme, "agreement", a_table)
    text = readme.read_text()
    assert read_section(text, "faithfulness") == f_table and read_section(text, "agreement") == a_table
    assert text.endswith("tail\n") and "old" not in text


def test_agreement_summary_gives_each_students_figures_on_one_map(written):
    from workbench.explain.results import TRAINED_MAP, agreement_summary

    res = json.loads((written / "agreement.json").read_text())
    rollout = agreement_summary(res, "rollout")
    assert list(rollout) == ["a", "b"] and rollout["b"] == res["students"]["b"]["maps"]["rollout"]["overall"]
    assert agreement_summary(res, TRAINED_MAP)["a"] == res["students"]["a"]["overall"]
    assert agreement_summary(res, "gradcam") == {}


def test_parse_students():
    assert parse_students(None) == {
        "dide": "assets/shapes-vqa-student",
        "none": "assets/shapes-vqa-student-none",
        "dide-fast": "assets/shapes-vqa-student-fast",
        "dide-pt": "assets/shapes-vqa-student-dide-pt",
    }
    root = Path(__file__).resolve().parents[2]
    assert all((root / path).is_dir() for path in parse_students(None).values())  # every default is shipped
    assert parse_students(["x=a/b", "y=c=d"]) == {"x": "a/b", "y": "c=d"}
    with pytest.raises(ValueError):
        parse_students(["nopath"])
