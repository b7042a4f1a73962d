"""The README's results table is the one `workbench report` makes from the shipped checkpoints."""

from pathlib import Path

from workbench.report import read_section, teacher_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_results_table_matches_the_shipped_checkpoints():
    readme = (ROOT / "README.md").read_text()
    expected = teacher_table(ROOT / "assets").strip()
    assert read_section(readme, "results") == expected, "run: workbench report --readme README.md"


def test_a_retrieval_checkpoint_row_says_its_score_is_r_at_1(tmp_path):
    import json

    per = {"i2t R@1": {"accuracy": 0.9, "n": 8}, "t2i R@1": {"accuracy": 0.8, "n": 8}}
    for name, test in (("ret", {"accuracy": 0.85, "n": 8, "r1": 0.85, "per_type": per}),
                       ("vqa", {"accuracy": 0.85, "n": 8, "per_type": {"counting": {"accuracy": 0.85}}})):  # fmt: skip
        (tmp_path / name).mkdir()
        meta = {"dataset": name, "kind": "dual", "metrics": {"test": test}, "steps": 2, "train_seconds": 60}
        (tmp_path / name / "workbench.json").write_text(json.dumps(meta))
    ret, vqa = teacher_table(tmp_path).splitlines()[2:]
    assert "| R@1 85.00 (n=8) | i2t R@1 90.0, t2i R@1 80.0 |" in ret and "| 85.00 (n=8) | counting 85.0 |" in vqa


def test_readme_opens_with_the_two_commands():
    lines = [x for x in (ROOT / "README.md").read_text().splitlines() if x.strip()]
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [x.split("#")[0].strip() for x in block] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_dide_table_is_the_one_made_from_the_results_file():
    import json

    from workbench.distill.experiment import results_table

    results = json.loads((ROOT / "assets" / "results" / "dide.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert read_section(readme, "dide") == results_table(results).strip(), (
        "run: workbench experiment dide --collect --readme README.md"
    )


def test_readme_mcad_table_is_the_one_made_from_the_results_file():
    import json

    from workbench.distill.mcad_experiment import results_table

    results = json.loads((ROOT / "assets" / "results" / "mcad.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert read_section(readme, "mcad") == results_table(results).strip(), (
        "run: workbench experiment mcad --collect --readme README.md"
    )


def test_readme_faithfulness_table_is_the_one_made_from_the_results_file():
    import json

    from workbench.explain.results import faithfulness_table

    results = json.loads((ROOT / "assets" / "results" / "faithfulness.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert read_section(readme, "faithfulness") == faithfulness_table(results).strip(), (
        "run: workbench explain-results --readme README.md"
    )


def test_readme_agreement_table_is_the_one_made_from_the_results_file():
    import json

    from workbench.explain.results import agreement_table

    results = json.loads((ROOT / "assets" / "results" / "agreement.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert read_section(readme, "agreement") == agreement_table(results).strip(), (
        "run: workbench explain-results --readme README.md"
    )
