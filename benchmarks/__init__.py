"""Benchmark scripts (ratios against a baseline measured in the same run, plus peak memory) and the GPU suite."""
