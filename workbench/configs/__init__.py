"""Configuration as data, in one place: what a user reads and diffs to see how every shipped thing is made.

- `teachers`: the shipped teachers' training recipes (`workbench rebuild` and `workbench train`);
- `grids`: the experiment grids and their budgets (`workbench experiment`);
- `bench`: the benchmark presets (`workbench bench`).

The modules hold plain dicts of config fields (a `TrainConfig`'s, a method's `Config`'s) and small functions
that turn them into config objects; no training code. Import the module you need: this package imports none.
"""
