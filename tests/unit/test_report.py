"""The documentation stays true to the shipped files.

* docs/results.md: every generated section is what its generator makes of the shipped files (the
  checkpoints' own `workbench.json`, `assets/results/*.json`);
* README.md: a front page of at most 200 lines that opens with the two commands, whose headline numbers
  are the results files';
* README, docs/ and the notebooks link only to files inside the repository.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from workbench.experiments.stats import p_text
from workbench.report import read_section, teacher_table

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS_PAGE = ROOT / "docs" / "results.md"
RESULTS = ROOT / "assets" / "results"
MAX_README_LINES = 200


def _json(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _table(module: str, function: str, *args) -> str:
    return getattr(importlib.import_module(module), function)(*args)


def _grid_table(name: str) -> str:
    from workbench.experiments import get_grid, read_results, results_path, results_table

    grid = get_grid(name)
    return results_table(grid, read_results(results_path(grid, ROOT / "assets")))


# section of docs/results.md -> (the table its generator makes from the shipped files, the command that
# rewrites the section). The generators are imported lazily: a module that moves breaks one row, not the file.
GRIDS = ("dide", "mad", "mcad")  # each experiment grid's table is the section of its name
GENERATED = {
    "results": (lambda: teacher_table(ROOT / "assets"), "workbench report"),
    **{name: (lambda name=name: _grid_table(name), f"workbench experiment {name} --collect") for name in GRIDS},
    "faithfulness": (
        lambda: _table("workbench.explain.results", "faithfulness_table", _json("faithfulness")),
        "workbench explain-results",
    ),
    "agreement": (
        lambda: _table("workbench.explain.results", "agreement_table", _json("agreement")),
        "workbench explain-results",
    ),
    "speed": (lambda: _table("workbench.bench", "speed_table", _json("speed")), "workbench bench ... (docs/usage.md)"),
    "paraphrase": (
        lambda: _table("workbench.paraphrase_results", "paraphrase_table", _json("paraphrase")),
        "workbench paraphrase-results",
    ),
}


def test_every_experiment_grid_has_its_section():
    from workbench.experiments import grid_names

    assert set(grid_names()) == set(GRIDS), "a new grid gets a section in docs/results.md and a row in GRIDS"


@pytest.mark.parametrize("section", GENERATED)
def test_results_page_section_is_what_its_generator_makes(section):
    make, command = GENERATED[section]
    expected = make().strip()
    assert read_section(RESULTS_PAGE.read_text(), section) == expected, f"run: {command} --readme docs/results.md"


def test_a_retrieval_checkpoint_row_says_its_score_is_r_at_1(tmp_path):
    per = {"i2t R@1": {"accuracy": 0.9, "n": 8}, "t2i R@1": {"accuracy": 0.8, "n": 8}}
    for name, test in (("ret", {"accuracy": 0.85, "n": 8, "r1": 0.85, "per_type": per}),
                       ("vqa", {"accuracy": 0.85, "n": 8, "per_type": {"counting": {"accuracy": 0.85}}})):  # fmt: skip
        (tmp_path / name).mkdir()
        meta = {"dataset": name, "kind": "dual", "metrics": {"test": test}, "steps": 2, "train_seconds": 60}
        (tmp_path / name / "workbench.json").write_text(json.dumps(meta))
    ret, vqa = teacher_table(tmp_path).splitlines()[2:]
    assert "| R@1 85.00 (n=8) | - | i2t R@1 90.0, t2i R@1 80.0 |" in ret
    assert "| 85.00 (n=8) | - | counting 85.0 |" in vqa


def test_the_held_out_wording_column_shows_only_measurements_of_the_shipped_weights(tmp_path):
    from workbench.models.io import weights_fingerprint

    for name in ("measured", "rebuilt", "never"):
        (tmp_path / name).mkdir()
        test = {"accuracy": 0.9, "n": 8, "per_type": {"counting": {"accuracy": 0.9}}}
        meta = {"dataset": "d", "kind": "fusion", "metrics": {"test": test}, "steps": 2, "train_seconds": 60}
        (tmp_path / name / "workbench.json").write_text(json.dumps(meta))
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())
    measured = {"accuracy": 0.875, "n": 8}
    rows = [{"checkpoint": n, "fingerprint": weights_fingerprint(tmp_path / "measured"), "test-paraphrase": measured}
            for n in ("measured", "rebuilt")]  # fmt: skip
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "paraphrase.json").write_text(json.dumps({"checkpoints": rows}))
    lines = {line.split(" | ")[0]: line for line in teacher_table(tmp_path).splitlines()[2:]}
    assert "| 90.00 (n=8) | 87.50 (n=8) | counting 90.0 |" in lines["| `measured`"]
    assert "| 90.00 (n=8) | - | counting 90.0 |" in lines["| `rebuilt`"]  # other weights than the ones measured
    assert "| 90.00 (n=8) | - | counting 90.0 |" in lines["| `never`"]


# -- the README: a front page


def test_readme_is_a_front_page_of_at_most_200_lines():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move detail into docs/"


def test_readme_opens_with_the_two_commands():
    lines = [x for x in README.read_text().splitlines() if x.strip()]
    assert lines[0].startswith("# ") and lines[1] == "```bash", "the first thing after the title is the two commands"
    block = lines[2 : lines.index("```", 2)]
    assert [x.split("#")[0].strip() for x in block] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _pm(value: dict) -> str:
    """A results file's {"mean", "std"} as the tables print it: percent, one decimal, ± std when there is one."""
    mean = f"{100 * value['mean']:.1f}"
    return mean if value.get("std") is None else f"{mean} ± {100 * value['std']:.1f}"


def _points(check: dict) -> str:
    """A claim as the README states it: the difference, its Welch p-value over the seeds each row has, the 95%
    confidence interval of the difference and the verdict (the results file's statistics and status)."""
    low, high = check["ci95"]
    return (
        f"{check['value']:+.1f}, Welch p {p_text(check['p_value'])} over {min(check['seeds'])} seeds"
        f" (95% CI {low:+.1f} to {high:+.1f}): {check['status']}"
    )


def headline_rows() -> dict[tuple[str, str], list[str]]:
    """(method, the start of the task cell) -> the cells the README's headline row must hold, from the JSON."""
    dide, mad, mcad, speed = _json("dide"), _json("mad"), _json("mcad"), _json("speed")

    def dide_cells(task):
        """The student and the teacher; the baseline when it has runs of today's recipe (else the README names
        the earlier one as such)."""
        rows, teacher = dide[task]["rows"], dide[task]["teacher"]["accuracy"]
        cells = [f"`dide` {_pm(rows['dide']['accuracy'])}", f"{100 * teacher:.1f}"]
        if "none" in rows:
            cells.append(f"`none` {_pm(rows['none']['accuracy'])}")
        else:
            cells.append(f"`none` (earlier recipe) {_pm(dide[task]['earlier']['none']['accuracy'])}")
        return cells

    def mad_cells(task, setting):
        rows = mad["results"][task][setting]
        check = mad["checks"]["mad_minus_none_points"][task][setting]
        return [f"`mad` {_pm(rows['mad']['accuracy'])}", f"`none` {_pm(rows['none']['accuracy'])}", _points(check)]

    paths = speed["paths"]
    vqa_rows = dide["shapes-vqa"]["rows"]
    vqa = {name: row["accuracy"] for name, row in vqa_rows.items()}
    vqa_checks = dide["shapes-vqa"]["checks"]
    kd = [f"`kd` {_pm(vqa['kd'])}", _points(vqa_checks["dide_minus_kd_points"])] if "kd" in vqa else []
    if "dide-pt" in vqa:  # DiDE's two stages against its second alone, and against it given as many steps
        kd += [f"`dide-pt` {_pm(vqa['dide-pt'])}", _points(vqa_checks["dide-pt_minus_dide_points"])]
        control = vqa_checks["dide-pt_minus_dide-4000-steps_points"]
        if control["value"] is None:
            kd.append("is pending")
        else:
            kd += [f"`dide` with 4,000 steps {_pm(vqa['dide (4,000 steps)'])}", _points(control)]
    per_type = [  # "relation +3.8 (p = 0.014)": each per-type claim the cell states, from its check
        f"{q} {c['value']:+.1f} (p {p_text(c['p_value'])})"
        for q in ("relation", "position", "comparison")
        for c in [vqa_checks[f"dide_minus_none_{q}_points"]]
    ]
    shift = mad["checks"]["mad_minus_none_points"]["shapes-ve"]["shift"]

    def margin(task, setting):  # "+2.4 (p = 0.461)": a setting's margin the 1% row also states
        c = mad["checks"]["mad_minus_none_points"][task][setting]
        return f"{c['value']:+.1f} (p {p_text(c['p_value'])})"

    return {
        ("DiDE", "shapes-vqa"): [
            *dide_cells("shapes-vqa"),
            *kd,
            _points(vqa_checks["dide_minus_none_points"]),
            *per_type,
        ],
        ("DiDE", "easy-VQA"): [
            *dide_cells("easy-vqa"),
            _bound_cell(dide["easy-vqa"]["checks"]["dide_gap_to_teacher_points"]),
        ],
        ("MAD", "shapes-ve, 1%"): [*mad_cells("shapes-ve", "low1"), f"10% of the pairs {margin('shapes-ve', 'low10')}"],
        ("MAD", "shapes-ve, all pairs"): [
            *mad_cells("shapes-ve", "full"),
            f"on the compositional split {shift['value']:+.1f} (p {p_text(shift['p_value'])})",
        ],
        ("MAD", "shapes-vqa, 1%"): [
            *mad_cells("shapes-vqa", "low1"),
            f"10% of the pairs {margin('shapes-vqa', 'low10')}",
            f"all of them {margin('shapes-vqa', 'full')}",
        ],
        ("MCAD", "hard retrieval gallery"): _mcad_cells(mcad),
        ("speed", "shapes-vqa, batch 1"): [
            f"{paths['student_cached']['batches']['1']['per_example_ms']:.3f}",
            f"{paths['teacher']['batches']['1']['per_example_ms']:.3f}",
            _speedup_cell(speed["ratios"]["1"]),
        ],
        **_paper_scale_row(speed),
    }


def _bound_cell(check: dict) -> str:
    """A within-the-teacher claim: over how many seeds, its t-test when it has one, and its verdict."""
    test = "" if check["p_value"] is None else f" (t-test p {p_text(check['p_value'])})"
    seeds = f"{check['seeds']} seed" + ("" if check["seeds"] == 1 else "s")
    return f"within {check['target']} points of the teacher on {seeds}{test}: {check['status']}"


def _mcad_cells(mcad: dict) -> list[str]:
    """MCAD's headline: the fused-feature `mcad` against `clip`, then against `clipkd` and `mcad-scalar`, all of
    today's clean splits (the file's current rows; the leaky-gallery runs are in its earlier section, which the
    headline does not read)."""
    rows, checks = mcad["rows"], mcad["checks"]
    teacher = mcad["teachers"]["dual"]["r1"]
    return [
        f"`mcad` {_pm(rows['mcad']['r1'])}",
        f"`clip` {_pm(rows['clip']['r1'])}",
        f"{100 * teacher:.1f}",
        _points(checks["mcad_minus_clip_r1_points"]),
        # against the soft-label baseline and the scalar form of the fused signal, with their rows' figures
        f"`clipkd` {_pm(rows['clipkd']['r1'])}",
        _points(checks["mcad_minus_clipkd_r1_points"]),
        f"`mcad-scalar` {_pm(rows['mcad-scalar']['r1'])}",
        _points(checks["mcad_minus_mcad-scalar_r1_points"]),
    ]


def _speedup_cell(ratio: dict) -> str:
    """The README's speed-up: the median of the interleaved rounds with their range."""
    lo, hi = ratio["student_cached_speedup_range"]
    rounds = ratio["student_cached_speedup_rounds"]
    return f"{ratio['student_cached_speedup']:.1f}x faster (range {lo:.1f}-{hi:.1f} over {rounds} interleaved rounds)"


def _paper_scale_row(speed: dict) -> dict[tuple[str, str], list[str]]:
    """The README's paper-scale speed row: the preset's fast student, batch 1, each model in its best runtime."""
    if "paper_scale" not in speed:
        return {}
    section = speed["paper_scale"]
    best = section["students"]["student-fast"]["best"]["1"]
    cached = best["student_cached"]
    lo, hi = cached["speedup_range"]
    return {
        ("speed", "ViLT-B/32 size"): [
            "untrained weights",
            f"{cached['ms']:.1f}",
            f"{best['teacher_ms']:.0f}",
            f"{cached['speedup']:.1f}x faster (range {lo:.1f}-{hi:.1f})",
        ]
    }


def test_readme_headline_numbers_are_the_results_files():
    table = read_section(README.read_text(), "headline").splitlines()
    for (method, task), cells in headline_rows().items():
        (row,) = [r for r in table if r.startswith(f"| {method} | {task}")]
        present = [c.strip() for c in row.split("|")]
        missing = [c for c in cells if not any(c in p for p in present)]
        assert not missing, f"README headline row {method} / {task}: {missing} not in {row}"


def test_readme_agreement_paragraph_is_the_agreement_file():
    """The figures of the README's "where the student looks" paragraph: each map's Spearman of the students it
    compares and the paired test between them, from assets/results/agreement.json."""
    agreement = _json("agreement")
    students, paired = agreement["students"], agreement["paired"]

    def rho(student, kind):
        return f"{students[student]['maps'][kind]['overall']['spearman']:.2f}"

    def p(pair, kind):
        return f"p {p_text(paired[pair]['maps'][kind]['spearman_p_value'])}"

    phrases = [
        f"{agreement['settings']['n']} test examples",
        f"the distilled virtual cross-attention {rho('dide', 'attention')} vs {rho('none', 'attention')}",
        f"Integrated Gradients {rho('dide', 'ig')} vs {rho('none', 'ig')} (paired t-test {p('dide vs none', 'ig')})",
        f"rollout {rho('dide', 'rollout')} vs {rho('none', 'rollout')} ({p('dide vs none', 'rollout')})",
        f"relevancy {rho('dide', 'relevancy')} vs {rho('none', 'relevancy')} ({p('dide vs none', 'relevancy')})",
        f"{rho('dide-pt', 'rollout')} against `dide`'s {rho('dide', 'rollout')} ({p('dide vs dide-pt', 'rollout')};",
        f"relevancy ({rho('dide-pt', 'relevancy')}, {p('dide vs dide-pt', 'relevancy')})",
        f"IG ({rho('dide-pt', 'ig')}, {p('dide vs dide-pt', 'ig')})",
    ]
    text = " ".join(README.read_text().split())  # the paragraph may be wrapped anywhere
    assert not [x for x in phrases if x not in text]
    best = max(students, key=lambda s: students[s]["maps"]["rollout"]["overall"]["spearman"])
    assert best == "dide-pt" and "highest rollout Spearman of the four students" in text and len(students) == 4


def test_readme_reworded_table_is_the_paraphrase_results_file():
    from workbench.paraphrase_results import readme_table

    assert read_section(README.read_text(), "reworded") == readme_table(_json("paraphrase")).strip()


# -- links stay inside the repository


def _documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped, spaces to hyphens)."""
    heads = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def _markdown(path: Path) -> str:
    """A document's Markdown: the file, or a notebook's markdown cells."""
    if path.suffix != ".ipynb":
        return path.read_text()
    cells = json.loads(path.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_links_in_readme_docs_and_notebooks_point_at_files_and_headings_that_exist():
    broken = []
    for doc in [*_documents(), *sorted((ROOT / "notebooks").glob("*.ipynb"))]:
        text = re.sub(r"```.*?```", "", _markdown(doc), flags=re.S)  # links inside code blocks are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken


def test_readme_docs_and_notebooks_name_no_file_outside_the_repository():
    files = [*_documents(), *sorted((ROOT / "notebooks").glob("*.ipynb"))]
    outside = [str(p.relative_to(ROOT)) for p in files if re.search(r"DESIGN\.md|RELIABILITY\.md", p.read_text())]
    assert not outside, "the design notes live in docs/ now"


def test_the_paper_scale_table_in_the_docs_is_the_measurement_file():
    from workbench.scale import scale_table

    results = json.loads((ROOT / "assets" / "results" / "scale.json").read_text())
    doc = (ROOT / "docs" / "real-data.md").read_text()
    assert read_section(doc, "scale") == scale_table(results).strip()
    assert all("untrained" in r["weights"] for r in results if "mode" in r)
    assert {(r["mode"], r["precision"]) for r in results if "mode" in r} == {
        ("distill", "fp32"), ("distill", "bf16"), ("teacher", "fp32"), ("teacher", "bf16")
    }  # fmt: skip
