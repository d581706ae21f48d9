"""Run the example specs in local mode and data parallel with 2 workers; print a table.

    .venv/bin/python bench/examples.py [--runs N]

Each run is `xsharp run SPEC -o json` in a fresh process, so start-up (imports, an embedded
Ray for data_parallel) is counted in "first step" and "total" as a user would see it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XSHARP = Path(sys.executable).with_name("xsharp")
CASES = [("local", ["--mode", "local"]), ("data_parallel x2", ["--mode", "data_parallel", "--workers", "2"])]


def run(spec: str, args: list[str]) -> dict:
    r = subprocess.run([str(XSHARP), "run", spec, "-o", "json", *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"xsharp run {spec} {' '.join(args)} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="repeat each case and report medians")
    parser.add_argument("specs", nargs="*", default=["examples/digits-dbn.yaml", "examples/digits-mixed.yaml"])
    opts = parser.parse_args()
    header = f"{'spec':<28} {'mode':<17} {'test acc':>8} {'first step s':>12} {'train s':>8} {'total s':>8} {'samples/s':>10}"
    print(header)
    print("-" * len(header))
    for spec in opts.specs:
        rates = {}
        for name, args in CASES:
            ms = [run(spec, args) for _ in range(opts.runs)]
            med = lambda key: statistics.median(m[key] for m in ms)  # noqa: E731
            rates[name] = med("samples_per_second")
            print(
                f"{Path(spec).name:<28} {name:<17} {100 * med('test_accuracy'):>7.2f}% {med('seconds_to_first_step'):>12.2f} "
                f"{med('train_seconds'):>8.2f} {med('total_seconds'):>8.2f} {rates[name]:>10,.0f}"
            )
        print(f"{'':<28} data_parallel x2 / local throughput: {rates['data_parallel x2'] / rates['local']:.3f}x")


if __name__ == "__main__":
    main()
