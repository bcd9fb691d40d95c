"""estbench.benchmarks: problems, data, the runner. Imports estimators."""
