"""Benchmarks: load generator, baselines and kernel microbenchmarks (`python -m bench`)."""

__all__: list[str] = []
