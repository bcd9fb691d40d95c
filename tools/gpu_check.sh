# The GPU checks in one go (about 4 minutes on an H200), from the repository root on a
# machine with a CUDA build of torch and the dependencies already installed; writes under $OUT.
#   OUT=/tmp/gpu bash tools/gpu_check.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/estbench-gpu}; mkdir -p "$OUT"
step() { echo; echo "=== [$SECONDS s] $*"; }
step info
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)"
step install
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3
step "CUDA tests"
python3 -m pytest -q -p no:cacheprovider tests/test_perf_and_device.py 2>&1 | tee "$OUT/pytest-device.log" | tail -6
step "pytest-benchmark files on cuda (smoke)"
python3 -m pytest -q -p no:cacheprovider benchmarks/ --estbench-device cuda 2>&1 | tail -3
step "estbench perf --all on cuda"
python3 -m estbench perf --all --device cuda --json "$OUT/perf-cuda.json" 2>&1 | tee "$OUT/perf-cuda.log"
step "chunk factor and finiteness probe"
python3 tools/gpu_probe.py cuda "$OUT/probe.json" > "$OUT/probe.log" 2>&1; tail -3 "$OUT/probe.log"
step "profile (caches off: their key ignores the probe's decomposition table)"
TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 python3 tools/gpu_profile.py "$OUT" cuda > "$OUT/profile.log" 2>&1; tail -8 "$OUT/profile.log"
step "report --quick on cuda"
python3 -m estbench report --quick --device cuda --quiet --out "$OUT/report" 2>&1 | tail -3
step done
