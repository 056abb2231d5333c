"""Routing policies for the simulator: warmserve's production policy and re-implemented baselines."""
