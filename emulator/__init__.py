"""Local emulators of annotation platforms, for tests, demos and benchmarks."""
