"""Benchmarks: each prints a table, compares with a same-run baseline and writes JSON."""
