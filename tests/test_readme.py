"""The README: its first lines are the two set-up commands (CI runs exactly those), it stays a
front page, and its Python API example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2] == "```bash"
    cmds = readme_commands()
    assert len(cmds) == 2
    assert cmds[0].endswith("estbench report") and cmds[1].endswith("pytest")
    for cmd in cmds:
        assert "-c constraints.txt" in cmd  # pinned: the CPU torch, never a CUDA build


def test_ci_runs_the_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in readme_commands():
        assert cmd in ci, cmd


def test_constraints_pin_torch_exactly():
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, flags=re.M)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    for link in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (ROOT / link).is_file(), link


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"<!-- api example.*?-->\n```python\n(.*?)```", text, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    df = scope["df"]
    half = df[(df["estimator"] == "half-reinforce") & (df["parameter"] == "sigma")]
    plain = df[(df["estimator"] == "reinforce") & (df["parameter"] == "sigma")]
    # the halved estimator is shown biased (its bias is -sigma, about 9 standard errors at R = 2000)
    # and plain REINFORCE is not (Bonferroni over 2 rows at a 1e-3 false-failure rate: |z| < 3.3)
    assert (half["bias_z"].abs() > 5).all() and (plain["bias_z"].abs() < 3.3).all()
    assert (tmp_path / "reports" / "notebook" / "report.md").is_file()


@pytest.mark.slow
def test_benchmark_only_needs_no_test_extra(tmp_path):
    """`pytest --benchmark-only` after the base install alone: the test extra's packages (here made
    unimportable) are not needed, since the unit tests under tests/ are not collected."""
    import os
    import subprocess
    import sys

    for name in ("hypothesis", "scipy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('not in the base install')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "pytest", "--benchmark-only", "--collect-only", "-q", "-p", "no:cacheprovider",
           "-p", "no:hypothesispytest"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    collected = [ln for ln in proc.stdout.splitlines() if "::" in ln]
    assert collected and all(ln.startswith("benchmarks/") for ln in collected)
