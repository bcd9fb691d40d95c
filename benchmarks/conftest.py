"""Benchmark names read as ``estimator[problem-setting]`` in pytest-benchmark's table."""


def pytest_collection_modifyitems(items):
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if case is not None and hasattr(case, "name"):
            item.name = case.name
