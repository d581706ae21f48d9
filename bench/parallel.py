"""Parallel execution modes against their peers, measured in one run on this machine.

    .venv/bin/python bench/parallel.py [--sizes 4 16 64 256] [--skip-accuracy] [--json FILE]

1. Allreduce bus bandwidth of one float32 buffer between 2 workers: xsharp's shared-memory
   transport (what two workers on one node use) and its ring over Ray's object store (what
   workers on different nodes use), PyTorch's gloo allreduce (2 processes, torch 2.13.0 CPU), and a memcpy of the
   same size (what one node can move at best).
2. An MLP (512 -> 1024 -> 1024 -> 10) at global batch 256 and at 1024: 2-worker data-parallel
   speed-up over 1 worker, xsharp against PyTorch DDP (gloo, 2 processes) on the same network;
   the overhead of data_parallel with 1 worker over local mode; parameter-server and pipeline
   throughput against synchronous data parallel (batch 256). At batch 256 a worker's half
   batch computes for ~10 ms and the per-step work that does not shrink with the batch (the
   optimiser update over 1.6 M parameters, the allreduce; both memory-bound, and both cores
   share the memory bus) is ~3 ms; at 1024 the step is compute-bound, which is what the
   issue's >= 1.7x goal is about.
3. Test accuracy of every mode on examples/digits-dbn.yaml (asserted >= 95 %).

Every worker computes on one thread (Ray gives a 1-CPU actor one BLAS thread; local mode and
PyTorch are held to one too), so a speed-up is what a second core buys. On a small machine
shared with other work the figures are noisy: read ratios, and rerun before believing a few
per cent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLP = [{"dense": {"units": 1024}}, {"dense": {"units": 1024}}, {"softmax": {}}]
FEATURES, ROWS, CLASSES = 512, 8192, 10
BATCHES = (256, 1024)


# --------------------------------------------------------------------------- 1. allreduce
def ray_allreduce(sizes_mb: list[int], reps: int, transport: str) -> dict[int, float]:
    """Seconds per allreduce (max over the 2 workers, median over reps) for each size."""
    import ray

    from xsharp.parallel.collective import CollectiveMember, RayCollective

    @ray.remote
    class Peer(CollectiveMember):
        def join(self, rank, peers, transport):
            self.coll = RayCollective(rank, peers, self._mailbox(), transport=transport)

        def time(self, n: int, reps: int) -> list[float]:
            buf = np.ones(n, np.float32)
            self.coll.allreduce(buf)  # warm up: first use of the object store at this size
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                self.coll.allreduce(buf)
                times.append(time.perf_counter() - t)
            return times

    peers = [Peer.options(num_cpus=1, max_concurrency=4).remote() for _ in range(2)]
    ray.get([p.join.remote(i, peers, transport) for i, p in enumerate(peers)])
    out = {}
    for mb in sizes_mb:
        n = mb * 2**20 // 4
        times = ray.get([p.time.remote(n, reps) for p in peers])
        out[mb] = statistics.median(max(pair) for pair in zip(*times))
    for p in peers:
        ray.kill(p)
    return out


def memcpy(sizes_mb: list[int], reps: int) -> dict[int, float]:
    out = {}
    for mb in sizes_mb:
        src = np.ones(mb * 2**20 // 4, np.float32)
        dst = np.empty_like(src)
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            np.copyto(dst, src)
            times.append(time.perf_counter() - t)
        out[mb] = statistics.median(times[1:])
    return out


def _gloo_allreduce(rank: int, port: int, sizes_mb: list[int], reps: int, result) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    out = {}
    for mb in sizes_mb:
        t_ = torch.ones(mb * 2**20 // 4, dtype=torch.float32)
        dist.all_reduce(t_)
        times = []
        for _ in range(reps):
            dist.barrier()
            t = time.perf_counter()
            dist.all_reduce(t_)
            times.append(time.perf_counter() - t)
        out[mb] = statistics.median(times)
    if rank == 0:
        result.update(out)
    dist.destroy_process_group()


# --------------------------------------------------------------------------- 2. the MLP
def make_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    teacher = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    np.savez(path, x=x, y=(x @ teacher).argmax(axis=1))


def mlp_spec(path: Path, mode: str, workers: int, epochs: int, batch: int = BATCHES[0], **parallel) -> dict:
    spec = {
        "name": "bench-mlp",
        "data": {"path": str(path), "test_fraction": 0.1, "validation_fraction": 0.0},
        "model": MLP,
        "pretrain": {"epochs": 0},
        "train": {"epochs": epochs, "batch_size": batch, "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "mode": mode,
        "resources": {"workers": workers, "cpus_per_worker": 1 if workers <= 2 else 0.5, "device": "cpu"},
    }
    if parallel:
        spec["parallel"] = parallel
    return spec


def xsharp_rate(spec: dict) -> float:
    from threadpoolctl import threadpool_limits

    from xsharp.cluster.runner import run_job
    from xsharp.spec import parse_spec

    with threadpool_limits(1):  # local mode computes on one thread, as a 1-CPU worker does
        return run_job(parse_spec(spec)).metrics["samples_per_second"]


def _torch_train(rank: int, world: int, port: int, path: str, epochs: int, batch: int, result) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn as nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with np.load(path) as f:
        x, y = torch.from_numpy(f["x"][: int(ROWS * 0.9)]), torch.from_numpy(f["y"][: int(ROWS * 0.9)]).long()
    net = nn.Sequential(nn.Linear(FEATURES, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, CLASSES))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        net = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    steps = -(-len(y) // batch)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            lo, hi = len(idx) * rank // world, len(idx) * (rank + 1) // world  # this rank's share of the global batch
            opt.zero_grad()
            loss_fn(net(x[idx[lo:hi]]), y[idx[lo:hi]]).backward()
            opt.step()
    seconds = time.perf_counter() - t0
    if rank == 0:
        result["rate"] = epochs * len(y) / seconds
    if world > 1:
        dist.destroy_process_group()


def torch_rate(path: Path, world: int, epochs: int, batch: int = BATCHES[0]) -> float:
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_torch_train, args=(world, _free_port(), str(path), epochs, batch, result), nprocs=world)
        return result["rate"]


def gloo_allreduce(sizes_mb: list[int], reps: int) -> dict[int, float]:
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_gloo_allreduce, args=(_free_port(), sizes_mb, reps, result), nprocs=2)
        return dict(result)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- 3. accuracy
ACCURACY_CASES = [
    ("local", {"mode": "local", "resources.workers": 1}),
    ("data_parallel x2", {"mode": "data_parallel", "resources.workers": 2, "resources.cpus_per_worker": 1}),
    ("param_server x2, 2 servers, async", {"mode": "param_server", "resources.workers": 2, "resources.cpus_per_worker": 1, "parallel.servers": 2}),
    (
        "param_server x2, staleness 4",
        {"mode": "param_server", "resources.workers": 2, "resources.cpus_per_worker": 1, "parallel.servers": 2, "parallel.staleness": 4},
    ),
    ("pipeline 2 stages x 4 micro", {"mode": "pipeline", "resources.workers": 2, "resources.cpus_per_worker": 1}),
    ("hybrid 2 groups x 2 stages", {"mode": "hybrid", "resources.workers": 4, "resources.cpus_per_worker": 0.5, "parallel.micro_batches": 2}),
]


def accuracy() -> list[dict]:
    from xsharp.cluster.runner import run_job
    from xsharp.spec import load_spec

    rows = []
    for name, overrides in ACCURACY_CASES:
        m = run_job(load_spec(ROOT / "examples/digits-dbn.yaml", overrides)).metrics
        rows.append({"case": name, "test_accuracy": m["test_accuracy"], "train_seconds": m["train_seconds"], "stage_memory": m.get("stage_memory")})
        print(f"  {name:<36} {100 * m['test_accuracy']:6.2f} %  {m['train_seconds']:7.1f} s", flush=True)
    return rows


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64, 256], help="allreduce buffer sizes in MB")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the MLP runs")
    parser.add_argument("--skip-accuracy", action="store_true", help="leave out the digits accuracy runs (the longest part)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    opts = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        sys.exit("the peer is PyTorch: .venv/bin/pip install torch==2.13.0 (the CPU wheel), then run again")

    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=3 * 2**30, logging_level=logging.ERROR, log_to_driver=False)
    report: dict = {"cpus": os.cpu_count()}

    print("1. allreduce of one float32 buffer, 2 workers (bus bandwidth = bytes x 2(N-1)/N / time; N = 2)")
    shms, rings = ray_allreduce(opts.sizes, opts.reps, "shm"), ray_allreduce(opts.sizes, opts.reps, "ring")
    gloos, copies = gloo_allreduce(opts.sizes, opts.reps), memcpy(opts.sizes, opts.reps)
    print(f"  {'MB':>5} {'shm GB/s':>9} {'ring GB/s':>10} {'gloo GB/s':>10} {'memcpy GB/s':>12} {'shm/gloo':>9} {'shm/memcpy':>11}")
    report["allreduce"] = []
    for mb in opts.sizes:
        gb = mb / 1024
        sh, r, g, c = gb / shms[mb], gb / rings[mb], gb / gloos[mb], gb / copies[mb]
        report["allreduce"].append({"mb": mb, "shm_gbps": sh, "ring_gbps": r, "gloo_gbps": g, "memcpy_gbps": c})
        print(f"  {mb:>5} {sh:>9.2f} {r:>10.2f} {g:>10.2f} {c:>12.2f} {sh / g:>8.2f}x {sh / c:>10.2f}x", flush=True)

    report["mlp"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.npz"
        make_data(path)
        for batch in BATCHES:
            epochs = opts.epochs * batch // BATCHES[0]  # the same number of steps at every batch
            print(f"\n2. MLP {FEATURES}-1024-1024-{CLASSES}, batch {batch}, {epochs} epochs of {int(ROWS * 0.9)} rows (samples/s)")
            rates = {
                "local": xsharp_rate(mlp_spec(path, "local", 1, epochs, batch)),
                "data_parallel x1": xsharp_rate(mlp_spec(path, "data_parallel", 1, epochs, batch)),
                "data_parallel x2": xsharp_rate(mlp_spec(path, "data_parallel", 2, epochs, batch)),
                "torch 1 process": torch_rate(path, 1, epochs, batch),
                "torch DDP x2 (gloo)": torch_rate(path, 2, epochs, batch),
            }
            if batch == BATCHES[0]:
                rates["param_server x2 (async, 1 server)"] = xsharp_rate(mlp_spec(path, "param_server", 2, epochs, batch, servers=1))
                rates["pipeline 2 stages x 4 micro"] = xsharp_rate(mlp_spec(path, "pipeline", 2, epochs, batch, micro_batches=4))
            for name, rate in rates.items():
                print(f"  {name:<36} {rate:>9,.0f}")
            figures = {
                "xsharp data_parallel x2 / x1 speed-up (goal >= 1.7)": rates["data_parallel x2"] / rates["data_parallel x1"],
                "torch DDP x2 / 1 process speed-up": rates["torch DDP x2 (gloo)"] / rates["torch 1 process"],
                "xsharp data_parallel x2 / torch DDP x2 throughput": rates["data_parallel x2"] / rates["torch DDP x2 (gloo)"],
                "data_parallel x1 overhead over local (goal <= 5 %)": 1 - rates["data_parallel x1"] / rates["local"],
            }
            if batch == BATCHES[0]:
                figures["param_server x2 / data_parallel x2 throughput"] = rates["param_server x2 (async, 1 server)"] / rates["data_parallel x2"]
                figures["pipeline x2 / data_parallel x2 throughput"] = rates["pipeline 2 stages x 4 micro"] / rates["data_parallel x2"]
            for name, value in figures.items():
                print(f"  {name:<52} {100 * value:.1f} %" if "overhead" in name else f"  {name:<52} {value:.2f}x", flush=True)
            report["mlp"][batch] = {"samples_per_second": rates, "ratios": figures}

    if not opts.skip_accuracy:
        print("\n3. examples/digits-dbn.yaml, test accuracy per mode")
        report["digits"] = accuracy()
        low = [r["case"] for r in report["digits"] if r["test_accuracy"] < 0.95]
        assert not low, f"below the 95 % floor: {low}"
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=2) + "\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
