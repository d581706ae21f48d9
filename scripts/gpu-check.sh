#!/usr/bin/env bash
# The GPU check (issue 18), for a machine with one NVIDIA GPU, CuPy, nvidia-ml-py, NCCL and
# prometheus-client, and no network. Run it from a copy of the working tree:
#
#     scripts/gpu-check.sh            # or: make gpu-check;  OUT=DIR to write elsewhere
#
# It installs without the network: xsharp's pure dependencies that the machine lacks from
# gpu-check-carry/wheels (made beforehand by scripts/gpu-check-carry.sh) into a folder of their
# own (pip --no-index --target), and xsharp itself runs from this tree (PYTHONPATH), so that the
# recipes and benches beside it are the ones checked. Nothing is installed system-wide. It writes under $OUT
# (default ./gpu-check): summary.json and report.md from `python -m xsharp.gpu_check` (the
# environment, every module's gradients on CuPy against NumPy, a one-rank NCCL allreduce, the
# exporter against nvidia-smi, every digits and Fashion-MNIST recipe on CPU and GPU), and
# perf.json and perf.txt from `bench/perf.py --device gpu --no-peers` (RBM CD-1 and MLP SGD on the
# GPU against this machine's CPU cores). Budget: 8 minutes in all (GPU_CHECK_SECONDS).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check}
mkdir -p "$OUT"
TOTAL=${GPU_CHECK_SECONDS:-480}
START=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
PY=${PYTHON:-python3}
CARRY=$ROOT/gpu-check-carry
exec > >(tee "$OUT/log.txt") 2>&1

echo "== install (no network)"
VPY=$PY
DEPS=${GPU_CHECK_DEPS:-/tmp/xsharp-gpu-check-deps}
missing=$("$VPY" - <<'PY'
import importlib.util
need = {"pydantic": "pydantic", "yaml": "pyyaml", "threadpoolctl": "threadpoolctl"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "from $CARRY/wheels into $DEPS: $missing"
  "$VPY" -m pip install --quiet --no-index --find-links "$CARRY/wheels" --target "$DEPS" $missing || echo "WARNING: could not install $missing"
fi
export PYTHONPATH=$ROOT:$DEPS${PYTHONPATH:+:$PYTHONPATH}
"$VPY" -c "import xsharp, numpy, pydantic, yaml; print('xsharp from', xsharp.__file__)" || { echo "xsharp does not import"; exit 2; }
[ -f "$CARRY/digits.csv.gz" ] && export XSHARP_DIGITS_CSV=${XSHARP_DIGITS_CSV:-$CARRY/digits.csv.gz}
[ -d /usr/share/datasets/fashion-mnist ] || { [ -d "$CARRY/fashion-mnist" ] && export XSHARP_FASHION_MNIST_DIR=${XSHARP_FASHION_MNIST_DIR:-$CARRY/fashion-mnist}; }
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"

echo "== checks ($(left) s left)"
# the speed bench after: it needs about 100 s; the checks take what is left before it
"$VPY" -m xsharp.gpu_check --out "$OUT" --budget $(( $(left) - 110 )) ${GPU_CHECK_ARGS:-}
checks=$?

echo "== speed ($(left) s left)"
timeout $(( $(left) > 10 ? $(left) - 5 : 5 )) "$VPY" "$ROOT/bench/perf.py" --device gpu --no-peers --only mlp rbm \
  --repeats ${PERF_REPEATS:-3} --scale ${PERF_SCALE:-4} --json "$OUT/perf.json" | tee "$OUT/perf.txt"
speed=${PIPESTATUS[0]}

echo "== done in $(( $(date +%s) - START )) s: checks exit $checks, speed exit $speed; see $OUT/report.md, $OUT/perf.txt"
[ "$checks" = 0 ] && [ "$speed" = 0 ]
