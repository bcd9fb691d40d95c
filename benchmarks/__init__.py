"""benchmarks: the problems, their data, sweeps and plans, the replicate engine, rows, executors and
the run loop (``import benchmarks``; ``benchmarks.problems``, ``benchmarks.runner``, ...).

Imports estimators and nothing above it (docs/architecture.md). :mod:`benchmarks.schema` and
:mod:`benchmarks.results_file` are torch-free: the report reads results through them.
"""
