"""Benchmarks: each prints ratios measured in one run; figures go to bench/RESULTS.md."""
