"""Equivalent mutants of the data_io modules (see common.py for the format)."""

RULES: list[tuple[str, str, str, str]] = []

EQUIVALENT: dict[str, str] = {}
