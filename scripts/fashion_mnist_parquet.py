#!/usr/bin/env python3
"""Fashion-MNIST's pixels as one numeric table: a Parquet file of 784 pixel columns and a label.

    .venv/bin/python scripts/fashion_mnist_parquet.py OUT.parquet [--limit N] [--dtype uint8|float32]

Columns ``p0`` .. ``p783`` (row-major 28x28 grey levels: uint8 0..255 by default, or float32 in
[0, 1]) and ``label`` (int64, the IDX label: an index into FASHION_MNIST_CLASSES). Rows: the 60,000
training rows then the 10,000 test rows (``--limit N``: the first N of each), with a column
``split`` ("train"/"test") only if ``--split-column`` (a table import would take it as a feature).
Written with pyarrow, zstd-compressed, 8,192 rows a row group.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_pngs import FILES, IDX_DIR, read_idx  # noqa: E402


def build_table(idx_dir: Path = IDX_DIR, limit: int | None = None, dtype: str = "uint8", split_column: bool = False):
    import pyarrow as pa

    xs, ys, splits = [], [], []
    for split, (img_file, lab_file) in FILES.items():
        x, y = read_idx(idx_dir / img_file), read_idx(idx_dir / lab_file)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        xs.append(x.reshape(len(x), -1))
        ys.append(y.astype(np.int64))
        splits += [split] * len(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if dtype == "float32":
        x = x.astype(np.float32) / np.float32(255.0)
    columns = {f"p{j}": pa.array(np.ascontiguousarray(x[:, j])) for j in range(x.shape[1])}
    columns["label"] = pa.array(y)
    if split_column:
        columns["split"] = pa.array(splits)
    return pa.table(columns)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--limit", type=int, default=None, help="the first N rows of each split")
    p.add_argument("--dtype", choices=["uint8", "float32"], default="uint8")
    p.add_argument("--split-column", action="store_true", help="add a text column 'split' (train/test)")
    p.add_argument("--idx", type=Path, default=IDX_DIR)
    a = p.parse_args(argv)
    import pyarrow.parquet as pq

    t = time.perf_counter()
    table = build_table(a.idx, a.limit, a.dtype, a.split_column)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, a.out, compression="zstd", row_group_size=8192)
    print(f"{a.out}: {table.num_rows:,} rows x {table.num_columns} columns, {a.out.stat().st_size / 2**20:.1f} MiB, in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
