"""Every training method as one registry entry (the Method contract in `workbench.methods.base`).

Importing the package imports each module in it, and each module registers its entries; so a new method is
one new file here (docs/adding-a-method.md). Use:

    from workbench.methods import distill, get_method, method_names
    method_names(task="answer")          # ("none", "kd", "dide", "dide-pt", "mad", ...)
    get_method("dide").config(t2i=0.5)   # the method's typed config
    distill(train_config, config)        # train a student with the method named `train_config.recipe`
"""

from __future__ import annotations

import importlib
import pkgutil

from workbench.methods.base import METHODS, TASKS, Method, distill, get_method, method_names, register

# the label baselines first, then DiDE, MAD, MCAD: registration order is the order tables and menus show
_FIRST = ("labels", "dide", "mad", "mcad")
for _module in (*_FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _FIRST)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "TASKS", "Method", "distill", "get_method", "method_names", "register"]
