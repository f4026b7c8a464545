"""Benchmarks of the sandbox against a private redis-server: `python bench/run.py`."""
