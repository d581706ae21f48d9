"""Single-worker training throughput of the algorithm toolkit against its peers, side by side.

    .venv/bin/python bench/perf.py [--threads 1 2] [--only mlp rbm cnn] [--repeats 3] [--json FILE]
    .venv/bin/python bench/perf.py --device gpu      # on a machine with CuPy and a GPU
    .venv/bin/python bench/perf.py --prefetch [--threads 1 2] [--repeats 5]   # input overlap alone

Peers (bench-only, not dependencies of xsharp): PyTorch 2.13.0 CPU, scikit-learn's
BernoulliRBM, and learnergy 2.0.2 (a PyTorch RBM library; ``pip install --no-deps learnergy``:
its RBM needs only torch, the rest of its declared dependencies serve plotting and metrics).

1. MLP 784-1024-1024-10 (relu, softmax), batch 128, SGD momentum 0.9: xsharp's ``fit`` (the
   training loop every execution mode runs, local mode, on in-memory data) against a plain
   PyTorch loop (``nn.Sequential``, ``CrossEntropyLoss``, ``optim.SGD``) on the same rows,
   gathered batch by batch the same way.
2. RBM 784 -> 256 Bernoulli, CD-1, batch 64, learning rate 0.1, no momentum or decay:
   xsharp's greedy pretraining phase against ``sklearn.neural_network.BernoulliRBM.fit`` and
   learnergy's ``RBM.fit``. All three do 5 matrix products of the batch per update (3 for the
   Gibbs half-step, 2 for the gradient), with these differences, by the peers' own design:
   sklearn runs persistent CD ("SML": the negative chain goes on from the last batch's hidden
   samples) and samples binary visible states, does not shuffle, and keeps float32 data in
   float32 (its random numbers are float64). learnergy computes the gradient by autograd
   through the free energy (more products than 5), samples visible states, batches through a
   torch ``DataLoader``, and also scores a pseudo-likelihood on every batch; the row
   "learnergy (CD-1 step only)" times its own ``gibbs_sampling`` + free-energy cost + SGD
   step on batches gathered by index, without the DataLoader and the pseudo-likelihood.
   Two rows marked (info) are not peers: scikit-learn on float64 rows (its arithmetic when
   given ``x / 255.0`` of uint8 images), and CD-1's 5 matrix products alone in NumPy, the
   floor under any NumPy RBM on this BLAS: "products alone / sklearn" is the most any of them
   could gain on scikit-learn here.
3. CNN conv 5x5x20 -> maxpool 2 -> conv 5x5x50 -> maxpool 2 -> dense 500 -> softmax on 28x28,
   batch 64 (LeNet as in Caffe's MNIST example): xsharp's ``fit`` against a PyTorch loop.

Both sides run with the same number of threads (``threadpoolctl`` for NumPy's BLAS,
``torch.set_num_threads`` for PyTorch), at each count in ``--threads``. Data: Fashion-MNIST
from Debian's ``dataset-fashion-mnist`` (grey levels in [0, 1], not binarised), or, where it is
missing, uniform noise of the same shape (the run says which). Every figure is samples per
second over whole epochs after one untimed warm-up, the median of ``--repeats`` runs with the
two sides interleaved; a ratio above 1 means xsharp is faster. The machine is shared: read the
spread as well as the medians.

``--prefetch`` times xsharp alone (no peers needed): the MLP of case 1 at batches of 128, 512
and 2048 rows with the spec's ``data.prefetch`` at 0 (off: every batch gathered inline), at its
default (1024 KiB: batches of at least 1 MiB gathered ahead on a thread) and at 1 KiB (every
batch gathered ahead), and the ratio of each to off (issue 17).

Goals (issue 3): MLP >= 1.0x PyTorch; RBM >= 3x scikit-learn and >= 1.0x learnergy; CNN at
least 0.5x PyTorch (within 2x).

NumPy's OpenBLAS (xsharp, scikit-learn) picks its kernels from the CPU, or from
``OPENBLAS_CORETYPE`` where that is set; the run prints which it uses. PyTorch brings MKL.

``--device gpu`` runs xsharp on CuPy as well and prints its speed-up over xsharp on the CPU
and over the CPU peer (PyTorch for the MLP, learnergy for the RBM) at the largest thread count,
for SGD training and RBM pretraining; the DLPF paper reports 20-30x. That path needs CuPy and
a GPU and has not been run on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clock() -> float:  # bench/perf.py --clock cpu swaps in time.process_time
    return time.perf_counter()


MLP = [{"dense": {"units": 1024}}, {"dense": {"units": 1024}}, {"softmax": {}}]
CNN = [
    {"conv2d": {"filters": 20, "kernel": 5}},
    {"maxpool": {"size": 2}},
    {"conv2d": {"filters": 50, "kernel": 5}},
    {"maxpool": {"size": 2}},
    {"dense": {"units": 500}},
    {"softmax": {}},
]
HIDDEN = 256
CASES = {  # rows, epochs, batch of each case
    "mlp": (8192, 2, 128),
    "rbm": (12800, 2, 64),
    "cnn": (2048, 1, 64),
}


# --------------------------------------------------------------------------- data
def load_data(rows: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Fashion-MNIST's first ``rows`` training images (28x28 in [0, 1]) and labels, or noise."""
    from xsharp.algos.datasets import DataError, load

    try:
        d = load("fashion-mnist", limit=rows, validation_fraction=0.0)
        return np.ascontiguousarray(d.x_train, np.float32), d.y_train.astype(np.int64), "Fashion-MNIST"
    except DataError as e:
        print(f"  ({e}: using uniform noise of the same shape instead)")
        rng = np.random.default_rng(0)
        return rng.random((rows, 28, 28), dtype=np.float32), rng.integers(0, 10, rows), "uniform noise"


def dataset(x: np.ndarray, y: np.ndarray):
    from xsharp.algos.datasets import Dataset

    empty_x, empty_y = x[:0], y[:0]  # no validation rows: nothing but training is timed
    return Dataset("bench", x, y, empty_x, empty_y, empty_x, empty_y, [str(c) for c in range(10)])


# --------------------------------------------------------------------------- xsharp
def xsharp_fit(layers, x, y, epochs: int, batch: int, device: str, pretrain: bool, prefetch: int | None = None) -> float:
    """Samples/s of ``xsharp.algos.fit`` (the loop of every execution mode): fine-tuning with
    SGD momentum 0.9, or (``pretrain``) the RBM's CD-1 phase alone; ``prefetch`` (KiB) as the
    spec's ``data.prefetch`` (default: its default)."""
    from xsharp.algos import Model, fit
    from xsharp.algos.training import PREFETCH_KB
    from xsharp.spec import PretrainSpec, TrainSpec

    model = Model(layers, x.shape[1:], 10, seed=0, device=device)
    data = dataset(x, y)
    if pretrain:
        pre = PretrainSpec(epochs=epochs, batch_size=batch, learning_rate=0.1, momentum=0.0, weight_decay=0.0)
        train = TrainSpec(epochs=0, batch_size=batch, learning_rate=0.01, momentum=0.9, weight_decay=0.0)
    else:
        pre, train = None, TrainSpec(epochs=epochs, batch_size=batch, learning_rate=0.01, momentum=0.9, weight_decay=0.0)
    t = clock()
    fit(model, data, pretrain=pre, train=train, seed=0, prefetch=PREFETCH_KB if prefetch is None else prefetch)
    return epochs * len(y) / (clock() - t)


PREFETCH_ROWS, PREFETCH_EPOCHS = 8192, 2
PREFETCH_SETTINGS = {"off (0)": 0, "default (1024 KiB)": 1024, "every batch (1 KiB)": 1}


def gpu_main(opts) -> None:
    """``--device gpu --no-peers``: the RBM's CD-1 pretraining and the MLP's SGD training on the
    GPU against the same code on every CPU core of this machine (the GPU check runs this)."""
    from xsharp import backend

    try:
        backend.resolve("gpu")
    except backend.DeviceError as e:
        sys.exit(f"--device gpu: {e}")
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']} {i.get('num_threads')} threads" for i in threadpool_info() if i["user_api"] == "blas")
    except ImportError:
        blas = "threadpoolctl missing: BLAS threads unknown"
    cases = [c for c in opts.only if c in ("mlp", "rbm")]
    x_all, y_all, source = load_data(int(max(CASES[c][0] for c in cases) * opts.scale))
    print(f"data: {source}; {os.cpu_count()} CPUs, BLAS: {blas}; median of {opts.repeats} runs per figure\n")
    report: dict = {"cpus": os.cpu_count(), "data": source, "blas": blas, "repeats": opts.repeats, "cases": {}}
    for case in cases:
        rows, epochs, batch = CASES[case]
        rows = int(rows * opts.scale)
        x, y = x_all[:rows], y_all[:rows]
        print(TITLES[case].format(batch=batch) + f", {epochs} epoch(s) of {rows} rows")
        cpu = summarise(measure(case_runs(case, x, y, batch, "cpu", False)[0], epochs, opts.repeats))["xsharp"]
        gpu = summarise(measure(case_runs(case, x, y, batch, "gpu", False)[0], epochs, opts.repeats))["xsharp gpu"]
        ratio = gpu["median"] / cpu["median"]
        anchor = 20 if case == "rbm" else 30
        print(f"    xsharp cpu (all cores) {cpu['median']:>12,.0f} samples/s   (runs {cpu['min']:,.0f} .. {cpu['max']:,.0f})")
        print(f"    xsharp gpu             {gpu['median']:>12,.0f} samples/s   (runs {gpu['min']:,.0f} .. {gpu['max']:,.0f})")
        print(f"    gpu / cpu              {ratio:>12.1f}x   (DLPF anchor: {anchor}x)\n")
        report["cases"][case] = {"rows": rows, "epochs": epochs, "batch": batch, "cpu": cpu, "gpu": gpu, "gpu_over_cpu": ratio, "dlpf_anchor": anchor}
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=2, default=float) + "\n")


def prefetch_main(opts) -> None:
    """``--prefetch``: the MLP's training throughput with input overlap off and on."""
    from threadpoolctl import threadpool_limits

    rows = int(PREFETCH_ROWS * opts.scale)
    x, y, source = load_data(rows)
    print(f"data: {source}; {os.cpu_count()} CPUs; median of {opts.repeats} runs per figure; {opts.clock} clock\n")
    report: dict = {"cpus": os.cpu_count(), "data": source, "repeats": opts.repeats, "clock": opts.clock, "prefetch": {}}
    for batch in (128, 512, 2048):
        print(TITLES["mlp"].format(batch=batch) + f", {PREFETCH_EPOCHS} epoch(s) of {rows} rows; a batch is {batch * 784 * 4 / 1024:,.0f} KiB")
        for threads in opts.threads:
            with threadpool_limits(threads):
                runs = {name: (lambda e, kib=kib: xsharp_fit(MLP, x, y, e, batch, "cpu", False, kib)) for name, kib in PREFETCH_SETTINGS.items()}
                stats = summarise(measure(runs, PREFETCH_EPOCHS, opts.repeats))
            ratios = {f"{name} / off": (name, "off (0)", None) for name in PREFETCH_SETTINGS if name != "off (0)"}
            report["prefetch"][f"batch {batch}, {threads} thread(s)"] = {"samples_per_second": stats, "ratios": show(f"{threads} thread(s)", stats, ratios)}
        print()
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=2, default=float) + "\n")


# --------------------------------------------------------------------------- PyTorch
def torch_net(kind: str):
    import torch.nn as nn

    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )  # fmt: skip


def torch_fit(kind: str, x, y, epochs: int, batch: int) -> float:
    """Samples/s of a plain PyTorch loop: a shuffled gather per batch, forward, backward, step."""
    import torch

    torch.manual_seed(0)
    net = torch_net(kind)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx = torch.from_numpy(x if kind == "mlp" else x[:, None])
    ty = torch.from_numpy(y)
    steps = -(-len(y) // batch)
    t = clock()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for s in range(steps):
            idx = order[s * batch : (s + 1) * batch]
            opt.zero_grad()
            loss_fn(net(tx[idx]), ty[idx]).backward()
            opt.step()
    return epochs * len(y) / (clock() - t)


# --------------------------------------------------------------------------- RBM peers
def sklearn_rbm(x, epochs: int, batch: int) -> float:
    """Samples/s of ``BernoulliRBM.fit`` (``n_iter`` = epochs: one pass over the rows each)."""
    from sklearn.neural_network import BernoulliRBM

    v = x.reshape(len(x), -1)
    rbm = BernoulliRBM(n_components=HIDDEN, learning_rate=0.1, batch_size=batch, n_iter=epochs, random_state=0)
    t = clock()
    rbm.fit(v)
    return epochs * len(v) / (clock() - t)


def learnergy_rbm(x, epochs: int, batch: int) -> float:
    """Samples/s of learnergy's ``RBM.fit`` as the library runs it (DataLoader, pseudo-likelihood)."""
    import torch
    from learnergy.models.bernoulli import RBM
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    v = torch.from_numpy(x.reshape(len(x), -1))
    rbm = RBM(n_visible=v.shape[1], n_hidden=HIDDEN, steps=1, learning_rate=0.1, momentum=0.0, decay=0.0)
    t = clock()
    rbm.fit(TensorDataset(v, torch.zeros(len(v))), batch_size=batch, epochs=epochs)
    return epochs * len(v) / (clock() - t)


def learnergy_rbm_core(x, epochs: int, batch: int) -> float:
    """Samples/s of learnergy's CD-1 update alone: the body of its ``fit`` loop without the
    DataLoader and the per-batch pseudo-likelihood (its ``gibbs_sampling``, free-energy cost,
    backward and SGD step), on shuffled batches gathered by index."""
    import torch
    from learnergy.models.bernoulli import RBM

    torch.manual_seed(0)
    v = torch.from_numpy(x.reshape(len(x), -1))
    rbm = RBM(n_visible=v.shape[1], n_hidden=HIDDEN, steps=1, learning_rate=0.1, momentum=0.0, decay=0.0)
    steps = -(-len(v) // batch)
    t = clock()
    for epoch in range(epochs):
        order = torch.randperm(len(v), generator=torch.Generator().manual_seed(epoch))
        for s in range(steps):
            samples = v[order[s * batch : (s + 1) * batch]]
            *_, visible_states = rbm.gibbs_sampling(samples)
            visible_states = visible_states.detach()
            cost = torch.mean(rbm.energy(samples)) - torch.mean(rbm.energy(visible_states))
            rbm.optimizer.zero_grad()
            cost.backward()
            rbm.optimizer.step()
    return epochs * len(v) / (clock() - t)


def sklearn_rbm_float64(x, epochs: int, batch: int) -> float:
    """:func:`sklearn_rbm` on float64 rows, what BernoulliRBM computes in when handed ``x / 255.0``
    of uint8 images (for information: the goal's comparison is the float32 one)."""
    return sklearn_rbm(x.astype(np.float64), epochs, batch)


def cd1_products(x, epochs: int, batch: int) -> float:
    """Samples/s of CD-1's 5 matrix products alone (NumPy, float32), batch by batch: the rate no
    NumPy RBM can pass on this BLAS, so sklearn's time over this is the most any can gain on it."""
    v = x.reshape(len(x), -1)
    W = (0.01 * np.random.default_rng(0).standard_normal((v.shape[1], HIDDEN))).astype(np.float32)
    steps = -(-len(v) // batch)
    t = clock()
    for _ in range(epochs):
        for s in range(steps):
            v0 = v[s * batch : (s + 1) * batch]
            ph0 = v0 @ W  # positive phase
            pv = ph0 @ W.T  # reconstruction
            ph1 = pv @ W  # negative phase
            v0.T @ ph0, pv.T @ ph1  # the two statistics of the gradient
    return epochs * len(v) / (clock() - t)


# --------------------------------------------------------------------------- measuring
IDLE = 0.3  # seconds between runs: OpenBLAS's threads spin ~0.1 s after their last product, OpenMP's less


def measure(runs: dict[str, Callable[[int], float]], epochs: int, repeats: int) -> dict[str, list[float]]:
    """Each side once untimed (1 epoch), then ``repeats`` rounds, the sides interleaved so that
    a burst of load elsewhere on the machine hits all of them alike. Each run starts after a
    pause, so that the previous side's idle BLAS threads no longer spin on the cores it needs."""
    for run in runs.values():
        run(1)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(IDLE)
            rates[name].append(run(epochs))
    return rates


def summarise(rates: dict[str, list[float]]) -> dict[str, dict]:
    return {name: {"median": statistics.median(r), "min": min(r), "max": max(r), "runs": r} for name, r in rates.items()}


def show(title: str, stats: dict[str, dict], ratios: dict[str, tuple[str, str, float | None]]) -> dict[str, float]:
    print(f"  {title}")
    for name, s in stats.items():
        spread = f"{s['min']:>9,.0f} .. {s['max']:,.0f}"
        print(f"    {name:<34} {s['median']:>9,.0f} samples/s   (runs {spread})")
    out = {}
    for label, (a, b, goal) in ratios.items():
        value = stats[a]["median"] / stats[b]["median"]
        verdict = "" if goal is None else (f"  goal >= {goal:.1f}x: {'met' if value >= goal else 'NOT met'}")
        print(f"    {label:<34} {value:>9.2f}x{verdict}")
        out[label] = value
    return out


def case_runs(case: str, x, y, batch: int, device: str, peers: bool) -> tuple[dict, dict]:
    """The runs of one case (``epochs`` -> samples/s) and the ratios to print."""
    tag = "xsharp" if device == "cpu" else "xsharp gpu"
    if case == "rbm":
        runs = {tag: lambda e: xsharp_fit([{"rbm": {"hidden": HIDDEN}}, {"softmax": {}}], x, y, e, batch, device, True)}
        if not peers:
            return runs, {}
        runs |= {
            "scikit-learn BernoulliRBM": lambda e: sklearn_rbm(x, e, batch),
            "learnergy RBM.fit": lambda e: learnergy_rbm(x, e, batch),
            "learnergy (CD-1 step only)": lambda e: learnergy_rbm_core(x, e, batch),
            "(info) scikit-learn on float64": lambda e: sklearn_rbm_float64(x, e, batch),
            "(info) CD-1's 5 products alone": lambda e: cd1_products(x, e, batch),
        }
        return runs, {
            "xsharp / scikit-learn": (tag, "scikit-learn BernoulliRBM", 3.0),
            "xsharp / learnergy RBM.fit": (tag, "learnergy RBM.fit", 1.0),
            "xsharp / learnergy CD-1 step": (tag, "learnergy (CD-1 step only)", 1.0),
            "(info) xsharp / sklearn float64": (tag, "(info) scikit-learn on float64", None),
            "(info) products alone / sklearn": ("(info) CD-1's 5 products alone", "scikit-learn BernoulliRBM", None),
            "(info) xsharp / products alone": (tag, "(info) CD-1's 5 products alone", None),
        }
    layers = MLP if case == "mlp" else CNN
    runs = {tag: lambda e: xsharp_fit(layers, x, y, e, batch, device, False)}
    if not peers:
        return runs, {}
    runs["PyTorch"] = lambda e: torch_fit(case, x, y, e, batch)
    return runs, {"xsharp / PyTorch": (tag, "PyTorch", 1.0 if case == "mlp" else 0.5)}


TITLES = {
    "mlp": "MLP 784-1024-1024-10 relu/softmax, batch {batch}, SGD momentum",
    "rbm": "RBM 784 -> 256 Bernoulli, CD-1, batch {batch}",
    "cnn": "CNN conv5x5x20-pool2-conv5x5x50-pool2-dense500-softmax, batch {batch}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts, each run on both sides")
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (the median is reported)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's row count (0.25 for a quick look)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="gpu: also xsharp on CuPy, and its speed-up over the CPU")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: time the process's CPU seconds instead, which leaves out the time it waited for a core "
        "on a busy machine (meaningful with --threads 1 only: more threads add up their seconds)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--prefetch", action="store_true", help="only the MLP with data.prefetch off and on (no peers needed)")
    parser.add_argument(
        "--no-peers", action="store_true", help="with --device gpu: xsharp on the GPU against xsharp on this machine's CPU cores only (no PyTorch needed)"
    )
    opts = parser.parse_args()
    if opts.clock == "cpu":
        global clock
        clock = time.process_time
    if opts.prefetch:
        return prefetch_main(opts)
    if opts.no_peers:
        return gpu_main(opts)
    missing = [m for m in ("torch", "learnergy") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"missing peers {missing}: .venv/bin/pip install --no-deps learnergy==2.0.2 (torch 2.13.0 CPU must be there already)")

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from xsharp import backend

    if opts.device == "gpu":
        try:
            backend.resolve("gpu")  # now rather than after the CPU runs
        except backend.DeviceError as e:
            sys.exit(f"--device gpu: {e}")
    x_all, y_all, source = load_data(int(max(r for r, _, _ in CASES.values()) * opts.scale))
    blas = ", ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')}" for i in threadpool_info() if i["user_api"] == "blas")
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    report: dict = {
        "cpus": os.cpu_count(),
        "data": source,
        "blas": blas,
        "openblas_coretype": coretype,
        "repeats": opts.repeats,
        "clock": opts.clock,
        "cases": {},
    }
    print(f"data: {source}; {os.cpu_count()} CPUs; BLAS loaded: {blas} (OPENBLAS_CORETYPE={coretype}); PyTorch {torch.__version__}")
    print(f"median of {opts.repeats} runs per figure; {opts.clock} clock\n")
    for case in opts.only:
        rows, epochs, batch = CASES[case]
        rows = int(rows * opts.scale)
        x, y = x_all[:rows], y_all[:rows]
        title = TITLES[case].format(batch=batch) + f", {epochs} epoch(s) of {rows} rows"
        print(title)
        report["cases"][case] = entry = {"rows": rows, "epochs": epochs, "batch": batch, "threads": {}}
        for threads in opts.threads:
            torch.set_num_threads(threads)
            with threadpool_limits(threads):
                runs, ratios = case_runs(case, x, y, batch, "cpu", True)
                stats = summarise(measure(runs, epochs, opts.repeats))
            entry["threads"][threads] = {"samples_per_second": stats, "ratios": show(f"{threads} thread(s)", stats, ratios)}
        if opts.device == "gpu" and case in ("mlp", "rbm"):
            threads = max(opts.threads)
            gpu = summarise(measure(case_runs(case, x, y, batch, "gpu", False)[0], epochs, opts.repeats))["xsharp gpu"]
            cpu = entry["threads"][threads]["samples_per_second"]
            peer = "PyTorch" if case == "mlp" else "learnergy RBM.fit"
            speedups = {
                f"xsharp gpu / xsharp cpu {threads} thr": gpu["median"] / cpu["xsharp"]["median"],
                f"xsharp gpu / {peer} cpu {threads} thr": gpu["median"] / cpu[peer]["median"],
            }
            print(f"  GPU: xsharp on CuPy {gpu['median']:,.0f} samples/s (runs {gpu['min']:,.0f} .. {gpu['max']:,.0f})")
            for label, value in speedups.items():
                print(f"    {label:<40} {value:>7.1f}x   (DLPF paper: 20-30x)")
            entry["gpu"] = {"samples_per_second": gpu, "speedups": speedups}
        print()
    if opts.json:
        opts.json.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
