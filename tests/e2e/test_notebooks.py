"""Every notebook runs top to bottom (nbclient), on the shipped checkpoints, offline."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, monkeypatch, tmp_path):
    # the kernel inherits the environment: notebooks that train read their step count from here,
    # and their temporary run folders (tempfile.mkdtemp) land in pytest's tmp_path, not in /tmp
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_STEPS", "20")
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_QUICK", "1")  # benchmarks at tiny settings
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_N", "120")  # evaluation subset size (07_error_analysis)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped in git"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
