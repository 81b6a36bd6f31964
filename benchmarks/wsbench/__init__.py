"""The pieces of the benchmark suite; ``benchmarks/bench.py`` is the entry point."""
