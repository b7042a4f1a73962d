"""Equivalent mutants of the methods modules (see common.py for the format)."""

RULES: list[tuple[str, str, str, str]] = []

EQUIVALENT: dict[str, str] = {}
