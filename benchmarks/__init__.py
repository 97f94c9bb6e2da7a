"""Benchmarks: commands that print their figures and write JSON."""
