"""Benchmarks: each prints figures beside the comparison measured in the same run and the goal."""
