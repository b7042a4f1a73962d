"""The README's results table is the one `workbench report` makes from the shipped checkpoints."""

from pathlib import Path

from workbench.report import END, START, teacher_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_results_table_matches_the_shipped_checkpoints():
    readme = (ROOT / "README.md").read_text()
    section = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert section == teacher_table(ROOT / "assets").strip(), "run: workbench report --readme README.md"


def test_readme_opens_with_the_two_commands():
    lines = [x for x in (ROOT / "README.md").read_text().splitlines() if x.strip()]
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [x.split("#")[0].strip() for x in block] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
