"""cgrad's benchmarks: `python -m benchmarks` runs the suite (benchmarks/run.py)."""
