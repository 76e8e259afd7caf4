"""Transaction graph: compact live graph, pattern kernels and case-graph export. Pure computation."""

__all__: list[str] = []
