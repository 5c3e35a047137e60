"""Benchmark scripts (run them as ``python bench/<name>.py``); figures go to bench/RESULTS.md."""
