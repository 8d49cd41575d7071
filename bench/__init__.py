"""Benchmarks (`make bench`): each module exposes rows() -> list[(name, value, unit)]."""
