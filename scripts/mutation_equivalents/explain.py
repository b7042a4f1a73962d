"""Equivalent mutants of the explain modules (see common.py for the format)."""

RULES: list[tuple[str, str, str, str]] = []

EQUIVALENT: dict[str, str] = {}
