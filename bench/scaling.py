"""Project data-parallel step time and efficiency to 8-512 GPUs: ring allreduce against a
parameter server, from a cost model fed with figures measured here.

    .venv/bin/python bench/scaling.py [--compute-ms MS --bandwidth-gbps GB/s --latency-us US --model-mb MB]

Measured (unless given): the compute time of one step of bench/parallel.py's MLP on one core,
the ring allreduce bus bandwidth and per-message latency between 2 workers over Ray's object
store. Then, for N workers each computing a fixed per-worker batch (weak scaling), P bytes of
gradients, link bandwidth B and latency a per message:

    ring allreduce     2 (N-1) a + 2 (N-1)/N P / B             every link busy, N-independent volume
    parameter server   2 a + 2 P / B * max(1, N / S)           push + pull; S servers share the load
    step               compute + communication (no overlap: the upper bound on step time)
    efficiency         compute / step;  speed-up = N x efficiency

A second table puts the same model on GPU-class figures (assumed, not measured: say which with
the options). Beside them, the Tencent platform's published speed-ups: 4.6x on 6 GPUs (data
parallel) and 2.52x on 4 GPUs (model + data parallel, "hybrid").
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = [8, 16, 32, 64, 128, 256, 512]
TENCENT = [("data parallel", 6, 4.6), ("hybrid (model + data)", 4, 2.52)]


def ring(n: int, p: float, b: float, a: float) -> float:
    return 0.0 if n == 1 else 2 * (n - 1) * a + 2 * (n - 1) / n * p / b


def param_server(n: int, p: float, b: float, a: float, servers: int) -> float:
    return 2 * a + 2 * p / b * max(1.0, n / servers)


def measure() -> dict:
    """Compute time of one MLP step (one thread), ring bandwidth and latency (2 workers)."""
    import ray
    from threadpoolctl import threadpool_limits

    spec = importlib.util.spec_from_file_location("bench_parallel", HERE / "parallel.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from xsharp.algos import Model

    model = Model(bench.MLP, (bench.FEATURES,), bench.CLASSES, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((bench.BATCH, bench.FEATURES)).astype(np.float32)
    y = rng.integers(0, bench.CLASSES, bench.BATCH)
    with threadpool_limits(1):
        model.loss_and_grad(x, y)
        t = time.perf_counter()
        for _ in range(10):
            model.loss_and_grad(x, y)
        compute = (time.perf_counter() - t) / 10
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=2**30, logging_level=logging.ERROR, log_to_driver=False)
    try:
        big = bench.ray_allreduce([64], 3)[64]
        tiny = bench.ray_allreduce([0], 5)[0]  # 0 MB: an empty buffer still makes the ring's 2 (N-1) hops
    finally:
        ray.shutdown()
    return {
        "compute_ms": 1e3 * compute,
        "bandwidth_gbps": 64 / 1024 / big,  # bus bandwidth for N = 2: bytes / time
        "latency_us": 1e6 * tiny / 2,  # 2 (N-1) = 2 messages in a row
        "model_mb": model.flat.nbytes / 2**20,
    }


def table(title: str, compute_ms: float, bandwidth_gbps: float, latency_us: float, model_mb: float) -> None:
    c, b, a, p = compute_ms / 1e3, bandwidth_gbps * 2**30, latency_us / 1e6, model_mb * 2**20
    print(f"\n{title}: compute {compute_ms:.2f} ms/step, link {bandwidth_gbps:.2f} GB/s, latency {latency_us:.0f} us, gradients {model_mb:.1f} MB")
    print(f"  {'N':>4} {'ring step ms':>13} {'ring eff':>9} {'ring speed-up':>14} {'PS S=1 eff':>11} {'PS S=N/8 eff':>13} {'PS S=N eff':>11}")
    for n in [4, 6] + SIZES:
        step = c + ring(n, p, b, a)
        effs = [c / (c + param_server(n, p, b, a, s)) for s in (1, max(1, n // 8), n)]
        print(f"  {n:>4} {1e3 * step:>13.2f} {c / step:>9.1%} {n * c / step:>13.1f}x {effs[0]:>11.1%} {effs[1]:>13.1%} {effs[2]:>11.1%}")
    for what, n, published in TENCENT:
        projected = n * c / (c + ring(n, p, b, a))
        print(f"  Tencent {what} on {n} GPUs: published {published:.2f}x ({published / n:.0%} efficiency); this model's ring: {projected:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compute-ms", type=float, help="compute time of one step on one worker (default: measured)")
    parser.add_argument("--bandwidth-gbps", type=float, help="link bandwidth in GB/s (default: measured ring bus bandwidth)")
    parser.add_argument("--latency-us", type=float, help="latency of one message (default: measured)")
    parser.add_argument("--model-mb", type=float, help="gradient bytes per step (default: the MLP's)")
    parser.add_argument(
        "--gpu-compute-ms", type=float, default=2.0, help="GPU table: step compute time (assumed: the MLP's step on one H100 is well under this)"
    )
    parser.add_argument("--gpu-bandwidth-gbps", type=float, default=12.5, help="GPU table: link bandwidth (assumed: 100 Gb/s InfiniBand per node)")
    parser.add_argument("--gpu-latency-us", type=float, default=10.0, help="GPU table: message latency (assumed: NCCL over InfiniBand)")
    opts = parser.parse_args()

    need = [opts.compute_ms, opts.bandwidth_gbps, opts.latency_us, opts.model_mb]
    got = measure() if any(v is None for v in need) else {}
    here = {
        "compute_ms": opts.compute_ms or got["compute_ms"],
        "bandwidth_gbps": opts.bandwidth_gbps or got["bandwidth_gbps"],
        "latency_us": opts.latency_us if opts.latency_us is not None else got["latency_us"],
        "model_mb": opts.model_mb or got["model_mb"],
    }
    table("This machine (measured; 2 shared cores, noisy)", **here)
    table("GPU cluster (assumed figures, same model)", opts.gpu_compute_ms, opts.gpu_bandwidth_gbps, opts.gpu_latency_us, here["model_mb"])


if __name__ == "__main__":
    main()
