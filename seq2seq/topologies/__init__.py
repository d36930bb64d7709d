"""The four input/output topologies, each a class behind the ``Topology`` protocol of base.py,
chosen by ``conf/topology/NAME.yaml``: translate (N vs M, translate.py), classify (N vs 1) and tag
(N vs N, labelling/), generate (1 vs N, generate/). registry.py maps a checkpoint to its topology."""
