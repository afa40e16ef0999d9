"""nada benchmarks: ``python -m bench`` (real-size architectures, random weights, no downloads)."""
