"""The four input/output topologies, each a ``run`` built from the same parts (``conf/topology``):
translate (N vs M), classify (N vs 1), tag (N vs N) and generate (1 vs N)."""
