"""Moved: workbench.methods.mad_probe."""
from workbench.methods.mad_probe import *  # noqa: F401,F403
