"""The benchmark harness: `python -m loadtests.bench` (see `__main__`)."""
