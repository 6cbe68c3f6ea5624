"""Benchmarks: each ``bench_*.py`` prints figures beside the raw crypto they rest on, measured in the same run."""
