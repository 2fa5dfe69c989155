"""Benchmarks: `python -m benchmarks NAME [options]` (benchmarks/harness.py; `python -m benchmarks` lists them)."""
