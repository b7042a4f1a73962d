"""`workbench --help` and every subcommand's help explain themselves; `ask` answers from the shell."""

import subprocess
import sys

import pytest

from workbench.cli import build_parser

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def _help(*args):
    out = subprocess.run([sys.executable, "-m", "workbench.cli", *args, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_top_level_help_lists_every_subcommand():
    text = _help()
    assert "distill" in text.lower()
    for cmd in SUBCOMMANDS:
        assert cmd in text


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help(cmd):
    text = _help(cmd)
    assert f"workbench {cmd}" in text
    assert len(text.splitlines()) > 5
