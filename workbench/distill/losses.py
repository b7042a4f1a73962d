"""Moved: workbench.losses (kept during the redesign)."""
from workbench.losses import *  # noqa: F401,F403
from workbench.losses import _masked_log_softmax, _scores  # noqa: F401
