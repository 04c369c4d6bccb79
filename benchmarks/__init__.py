"""Runnable benchmarks of Switchboard; `make bench` runs them and writes docs/benchmarks.md."""
