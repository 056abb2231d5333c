"""Workloads for the simulator, deterministic from a seed; see `registry.py` for the named ones."""
