"""Benchmarks: `make bench` runs them and rewrites BENCHMARKS.md."""
