"""Load tests and benchmarks, driving Ghostgate as a user would."""
