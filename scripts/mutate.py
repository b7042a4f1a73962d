"""Mutation testing of the core modules (`make mutate`): run mutmut module by module, then report.

    python scripts/mutate.py                 # every module, then the report
    python scripts/mutate.py losses evaluate # some modules (the report covers what mutants/ holds)
    python scripts/mutate.py --report        # the report only, from the results in mutants/

mutmut (configured in pyproject.toml's [tool.mutmut]: the files, the tests) writes every mutant into mutants/
and runs each against the tests that call the mutated function. A module here is a file and the functions of
it in scope (`SCOPE`); the orchestration functions that load checkpoints and train (`run_*`) are left to the
integration tier's tiny runs, too slow to run per mutant. The report: the kill rate per module (written
between the `mutation` markers of docs/testing.md), assets/results/mutation.json and docs/mutation-report.md
(every surviving mutant, its one-line change and why it survives: `EQUIVALENT` below, by rule or by name).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fcntl
import fnmatch
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module: (file, mutant-name globs in scope). The method recipes are their objectives (the loss each computes, the
# teacher outputs it reads, what it trains); the runs that load checkpoints and call the trainer are not in scope.
# module: (file, mutant-name globs in scope). mutmut names a mutant `<module>.x_<function>__mutmut_<n>`, or
# `<module>.xǁ<Class>ǁ<method>__mutmut_<n>` for a method.
SCOPE: dict[str, tuple[str, tuple[str, ...]]] = {
    "losses": ("workbench/losses.py", ("workbench.losses.*",)),
    "methods.dide": ("workbench/methods/dide.py", ("workbench.methods.dide.xǁDiDEObjectiveǁ*",)),
    "methods.labels": ("workbench/methods/labels.py", ("workbench.methods.labels.xǁ*",)),
    "methods.dual_student": (
        "workbench/methods/dual_student.py",
        ("workbench.methods.dual_student.xǁTeacherObjectiveǁ*", "workbench.methods.dual_student.x_student_size_*"),
    ),
    "methods.mad": ("workbench/methods/mad.py", ("workbench.methods.mad.xǁ*", "workbench.methods.mad.x__grid_*")),
    "methods.mcad": ("workbench/methods/mcad.py", ("workbench.methods.mcad.xǁ*", "workbench.methods.mcad.x_[!r]*")),
    "evaluate": ("workbench/evaluate.py", ("workbench.evaluate.*",)),
    "explain.attention": ("workbench/explain/attention.py", ("workbench.explain.attention.*",)),
    "explain.rollout_maps": ("workbench/explain/rollout_maps.py", ("workbench.explain.rollout_maps.*",)),
    "explain.relevancy_maps": ("workbench/explain/relevancy_maps.py", ("workbench.explain.relevancy_maps.*",)),
    "models.io": ("workbench/models/io.py", ("workbench.models.io.*",)),
    "data.shapes.questions": ("workbench/data/shapes/questions.py", ("workbench.data.shapes.questions.*",)),
    "train.state": ("workbench/train/state.py", ("workbench.train.state.*",)),
    "train.trainer": (  # the resume path: the loop's start (restore), its epochs and what a checkpoint records
        "workbench/train/trainer.py",
        tuple(f"workbench.train.trainer.xǁTrainerǁ{m}__mutmut_*" for m in ("setup", "fit", "checkpoint")),
    ),
}

KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # a failing test, pytest's internal error, a timeout, a type check
SURVIVED = {0}
NO_TESTS = {33, 5}


def _equivalents() -> tuple[list[tuple[str, str, str, str]], dict[str, str]]:
    """`RULES` and `EQUIVALENT` merged from scripts/mutation_equivalents/*.py (one file per group of modules)."""
    rules, names = [], {}
    for path in sorted((ROOT / "scripts" / "mutation_equivalents").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"mutation_equivalents.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rules += getattr(module, "RULES", [])
        names.update(getattr(module, "EQUIVALENT", {}))
    return rules, names


RULES, EQUIVALENT = _equivalents()


def mutant_globs(modules: list[str]) -> list[str]:
    return [g for m in modules for g in SCOPE[m][1]]


def not_killed(module: str) -> list[str]:
    """The mutants of `module` in scope that no test has killed yet (survived, untested, or not run)."""
    file, globs = SCOPE[module]
    meta = ROOT / "mutants" / f"{file}.meta"
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    return [k for k, v in codes.items() if v not in KILLED and any(fnmatch.fnmatch(k, g) for g in globs)]


def run(modules: list[str], jobs: int, retest: bool = False) -> None:
    """mutmut on each module's mutants in scope (`retest`: only those not killed yet, after adding tests)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKBENCH_ASSETS": str(ROOT / "assets")}
    mutmut = Path(sys.executable).parent / "mutmut"
    for module in modules:
        names = not_killed(module) if retest else list(SCOPE[module][1])
        print(f"== {module}: {'retesting ' + str(len(names)) if retest else 'every'} mutant(s)", flush=True)
        if not names:
            continue
        log = ROOT / "mutants" / f"run-{module}.log"
        log.parent.mkdir(exist_ok=True)
        # mutmut keeps one stats file for the whole tree: concurrent runs wait for each other instead of racing.
        with open(ROOT / "mutants" / ".lock", "w") as lock, open(log, "w") as out:
            fcntl.flock(lock, fcntl.LOCK_EX)
            proc = subprocess.run([str(mutmut), "run", "--max-children", str(jobs), *names], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        if proc.returncode:
            sys.exit(f"mutmut failed on {module} (exit {proc.returncode}); see {log}")


def _functions(path: Path) -> dict[str, str]:
    """{function name: its source} of every function in a mutmut-generated file (methods included)."""
    text = path.read_text()
    lines = text.splitlines()  # once: ast.get_source_segment splits the whole file again on every call
    return {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def _change(functions: dict[str, str], name: str) -> tuple[str, str]:
    """(old lines, new lines) of mutant `name` against the original function, stripped."""
    short = name.rsplit(".", 1)[1]
    orig_name = short.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
    orig = functions.get(orig_name, "")
    mutant = functions.get(short, "").replace(short, orig_name, 1)
    old, new = [], []
    # unified_diff, not ndiff: ndiff's character-level pass is slow over thousands of mutants
    for line in difflib.unified_diff(orig.splitlines(), mutant.splitlines(), n=0, lineterm=""):
        if line.startswith("-") and not line.startswith("---"):
            old.append(line[1:].strip())
        elif line.startswith("+") and not line.startswith("+++"):
            new.append(line[1:].strip())
    return " / ".join(old), " / ".join(new)


def _why(name: str, old: str, new: str) -> str | None:
    if name in EQUIVALENT:
        return EQUIVALENT[name]
    function = name.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]
    for function_re, old_re, new_re, why in RULES:
        if re.search(function_re, function) and re.search(old_re, old) and re.search(new_re, new):
            return why
    return None


def collect() -> dict:
    """Per module: counts and the surviving / untested mutants with their change and reason."""
    out = {}
    for module, (file, globs) in SCOPE.items():
        meta = ROOT / "mutants" / f"{file}.meta"
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        mine = {k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, g) for g in globs)}
        functions = _functions(ROOT / "mutants" / file)
        survivors = []
        for name, code in sorted(mine.items(), key=lambda kv: _order(kv[0])):
            if code in KILLED:
                continue
            old, new = _change(functions, name)
            status = "survived" if code in SURVIVED else "no tests" if code in NO_TESTS else f"not run ({code})"
            survivors.append({"mutant": name, "status": status, "old": old, "new": new, "why": _why(name, old, new)})
        killed = sum(v in KILLED for v in mine.values())
        explained = sum(s["why"] is not None for s in survivors)
        out[module] = {
            "file": file,
            "mutants": len(mine),
            "killed": killed,
            "kill_rate": killed / max(len(mine), 1),
            "equivalent": explained,
            "kill_rate_of_killable": killed / max(len(mine) - explained, 1),
            "survivors": survivors,
        }
    return out


def _order(name: str) -> tuple[str, int]:
    base, _, n = name.rpartition("__mutmut_")
    return base, int(n) if n.isdigit() else 0


def table(results: dict) -> str:
    lines = [
        "| module | mutants | killed | kill rate | survivors explained (equivalent) | unexplained |",
        "|---|---|---|---|---|---|",
    ]
    for module, r in results.items():
        unexplained = sum(s["why"] is None for s in r["survivors"])
        lines.append(f"| `{module}` | {r['mutants']} | {r['killed']} | {100 * r['kill_rate']:.1f}% | "
                     f"{r['equivalent']} | {unexplained} |")  # fmt: skip
    return "\n".join(lines)


def report(results: dict) -> None:
    sys.path.insert(0, str(ROOT))
    from workbench.report import replace_section

    (ROOT / "assets" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "assets" / "results" / "mutation.json").write_text(json.dumps(results, indent=2) + "\n")
    replace_section(ROOT / "docs" / "testing.md", "mutation", table(results))
    md = [
        "# Surviving mutants",
        "",
        "Written by `make mutate` (scripts/mutate.py) from mutmut's results: every mutant of the core modules",
        "that no test killed, its change (old -> new line) and why it survives. docs/testing.md explains.",
        "",
    ]
    for module, r in results.items():
        md += [f"## `{module}` ({r['file']}): {r['killed']} of {r['mutants']} killed", ""]
        for s in r["survivors"]:
            why = s["why"] or "**unexplained: a test should kill it**"
            md += [f"- `{s['mutant'].rsplit('.', 1)[1]}` ({s['status']}): `{s['old']}` -> `{s['new']}`  ", f"  {why}"]
        md.append("")
    (ROOT / "docs" / "mutation-report.md").write_text("\n".join(md))
    print(table(results))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of {list(SCOPE)} (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--report", action="store_true", help="only write the report from mutants/")
    parser.add_argument("--retest", action="store_true", help="run only the mutants not killed yet (new tests)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in SCOPE]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; expected some of {list(SCOPE)}")
    if not args.report:
        run(args.modules or list(SCOPE), args.jobs, args.retest)
    report(collect())
    return 0


if __name__ == "__main__":
    sys.exit(main())
