#!/usr/bin/env bash
# Prepare gpu-check-carry/ on a machine with the network, for scripts/gpu-check.sh to use on a GPU
# machine that has none: wheels of xsharp's pure dependencies for Pythons 3.11-3.13 (the GPU
# machine brings numpy, CuPy, nvidia-ml-py, prometheus-client and NCCL), and the data sets the
# recipes train on (scikit-learn's digits file, Debian's Fashion-MNIST). About 45 MiB: it fits
# a 64 MiB carry. gpu-check-carry/ is ignored by git.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=gpu-check-carry
PY=${PYTHON:-.venv/bin/python}
rm -rf "$DEST" && mkdir -p "$DEST/wheels" "$DEST/fashion-mnist"
for v in 3.11 3.12 3.13; do
  "$PY" -m pip download --quiet --only-binary=:all: --python-version "$v" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d "$DEST/wheels" \
    pydantic pyyaml threadpoolctl setuptools
done
"$PY" - "$DEST" <<'PY'
import shutil, sys
from pathlib import Path
import sklearn
shutil.copy(Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz", Path(sys.argv[1]) / "digits.csv.gz")
PY
cp /usr/share/datasets/fashion-mnist/*.gz "$DEST/fashion-mnist/"
du -sh "$DEST"
