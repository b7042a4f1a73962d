"""The README's results table is the one `workbench report` makes from the shipped checkpoints."""

from pathlib import Path

from workbench.report import read_section, teacher_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_results_table_matches_the_shipped_checkpoints():
    readme = (ROOT / "README.md").read_text()
    expected = teacher_table(ROOT / "assets").strip()
    assert read_section(readme, "results") == expected, "run: workbench report --readme README.md"


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
