"""The data tier measured: imports, streaming, memory under a cap, and accuracy on imported data.

    .venv/bin/python bench/data.py all --epochs 1         # every part (about 12 minutes on 2 cores; pngs with the
                                                          # recipe's 8 epochs adds about 30)
    .venv/bin/python bench/data.py import [--images N]    # folder import vs a PyTorch DataLoader pass
    .venv/bin/python bench/data.py stream [--cnn-steps N] # training from shards vs from memory
    .venv/bin/python bench/data.py memory [--cap-mb MB]   # a dataset 4x a worker's memory cap, under the cap
    .venv/bin/python bench/data.py pngs [--epochs N]      # the CNN recipe on a PNG tree vs on the IDX files
    .venv/bin/python bench/data.py table                  # a Parquet table vs scikit-learn's LogisticRegression
    options: --work DIR (scratch: folders, catalog; default /tmp/xsharp-bench-data), --json FILE

Every part prints its figures and a ratio against a peer measured in the same run; nothing here
asserts a timing (the machine may be shared: each part prints the load average before and after).

import   Fashion-MNIST written as PNG and JPEG class folders (scripts/fashion_mnist_pngs.py, 10,000
         train + 10,000 test images), imported by ``xsharp.data.importer.import_dataset`` on an
         embedded Ray (every core; ``ray.init`` in a fresh process each time), against a
         PyTorch pass over the same folder: ``DataLoader(ImageFolder(root, Resize + ToTensor),
         batch_size=256, num_workers=os.cpu_count())``, run by Debian's ``python3-torchvision``
         (``/usr/bin/python3``; ``apt-get install python3-torchvision``) or ``--torch-python``.
         xsharp's figure is given three ways: with Ray's start-up, without it (the first import in
         a fresh Ray: its workers still start and import), and warm (the same import again). The
         import also SHA-256s every file and writes checksummed shards, which the peer does not.
         A per-image cost breakdown of one worker's loop (read, decode, resize, hash, shard
         write) and a shard-size sweep say where the time goes.
stream   Samples/s of ``train_worker`` (local mode, in-process) on the bundled Fashion-MNIST
         imported by name, ``data.stream: true`` against ``false`` (the same rows read whole):
         an MLP 784-1024-1024-10 for ``--mlp-steps`` steps, the Fashion-MNIST CNN recipe for
         ``--cnn-steps`` steps, ``--repeats`` runs of each side interleaved (medians); and digits (1,797 rows) with the digits-mlp recipe, stream vs memory.
memory   Datasets of 0.5x, 1.5x and 4x a memory cap (as float32 rows, what reading them whole
         takes), written as uint8 shards of tiled Fashion-MNIST rows; a small MLP trains one
         epoch streamed, each run in a child process under the cap (a memory cgroup when one
         can be made, else RLIMIT_AS); peak RSS of each, the RSS of the imports alone, and the
         1.5x set read whole under the same cap (the control: it must not fit).
pngs     The CNN recipe on the PNG tree imported with --channels 1, against the recipe on the
         IDX files (``dataset: fashion-mnist``), ``--epochs`` each (default the recipe's 8).
table    Fashion-MNIST pixels as Parquet (scripts/fashion_mnist_parquet.py) imported as a table;
         a softmax and a small MLP with ``features: [standardize]`` beside scikit-learn's
         LogisticRegression on the same train/test rows (``read_whole``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

OWNER = "bench"
TORCH_PYTHON = "/usr/bin/python3"
RESULTS: dict = {}


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load {a:.2f} {b:.2f} {c:.2f}"


def header(title: str) -> None:
    print(f"\n== {title}  ({load()}, {os.cpu_count()} cores)", flush=True)


def catalog(work: Path):
    from xsharp.data.catalog import Catalog

    return Catalog(work / "catalog")


def fresh(cat, name: str) -> None:
    cat.delete(OWNER, name)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ensure_tree(out: Path, limit: int | None, jpeg: bool, side: int | None = None) -> Path:
    from fashion_mnist_pngs import write_tree

    done = out / ".complete"
    if not done.is_file():
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        n = write_tree(out, limit=limit, jpeg=jpeg, side=side)
        done.write_text(json.dumps(n))
        print(f"  wrote {out} ({n['train']:,} + {n['test']:,} {'JPEG' if jpeg else 'PNG'}) in {time.perf_counter() - t:.1f} s")
    return out


# =========================================================================== import
TORCH_PASS = r"""
import json, os, sys, time
t0 = time.perf_counter()
import torch, torchvision
from torchvision import datasets, transforms
root, h, w, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
steps = ([transforms.Grayscale(1)] if channels == 1 else []) + [transforms.Resize((h, w)), transforms.ToTensor()]
t1 = time.perf_counter()
ds = datasets.ImageFolder(root, transform=transforms.Compose(steps))
loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=os.cpu_count())
n = 0
shape = None
for x, y in loader:
    n += len(y); shape = list(x.shape[1:])
t2 = time.perf_counter()
print(json.dumps({"images": n, "seconds": t2 - t1, "import_seconds": t1 - t0, "shape": shape, "torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def torch_pass(python: str, root: Path, size: tuple[int, int], channels: int) -> dict | None:
    """One DataLoader pass over each split folder of ``root`` (train/ and test/ are ImageFolders)."""
    total = {"images": 0, "seconds": 0.0}
    for split in ("train", "test"):
        r = subprocess.run([python, "-c", TORCH_PASS, str(root / split), str(size[0]), str(size[1]), str(channels)], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  PyTorch pass failed ({python}): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            return None
        got = json.loads(r.stdout.strip().splitlines()[-1])
        total["images"] += got["images"]
        total["seconds"] += got["seconds"]
        total["version"] = f"torch {got['torch']}, torchvision {got['torchvision']}"
        total["shape"] = got["shape"]
    return total


def child_import(args) -> None:
    """(child) Ray start-up, then the same import cold and warm, then the --sweep shard sizes warm."""
    from xsharp.cluster import runtime
    from xsharp.data.importer import ImportOptions, import_dataset

    cat = catalog(Path(args.work))
    size = tuple(args.size) if args.size else None
    out = {}
    t0 = time.perf_counter()
    with runtime.connect(None):
        t1 = time.perf_counter()
        out["ray_start"] = t1 - t0
        runs = [("cold", args.shard_mb), ("warm", args.shard_mb)] + [(f"warm, shard {mb:g} MiB", mb) for mb in args.sweep]
        for label, mb in runs:
            name = f"imp-{os.getpid()}"
            t = time.perf_counter()
            m = import_dataset(args.src, name, OWNER, cat, ImportOptions(size=size, channels=args.channels, shard_mb=mb))
            out[label] = {"seconds": time.perf_counter() - t, "files": m.source["files"], "shards": len(m.shards), "shape": m.shape}
            fresh(cat, name)
        # the peer inside: the same shard jobs through a Ray Data map (what the importer used before)
        from xsharp.data import importer

        tasks = importer.run_shard_jobs
        importer.run_shard_jobs = ray_data_map
        try:
            name = f"imp-{os.getpid()}"
            t = time.perf_counter()
            m = import_dataset(args.src, name, OWNER, cat, ImportOptions(size=size, channels=args.channels, shard_mb=args.shard_mb))
            out["warm, Ray Data map"] = {"seconds": time.perf_counter() - t, "files": m.source["files"], "shards": len(m.shards), "shape": m.shape}
            fresh(cat, name)
        finally:
            importer.run_shard_jobs = tasks
    print("RESULT " + json.dumps(out), flush=True)


def ray_data_map(jobs: list[dict], kwargs: dict, cpus: int):
    """``importer.run_shard_jobs`` on Ray Data: the shard jobs as rows, a ``map`` of the same
    task function over them."""
    import logging

    import ray.data

    from xsharp.data.manifest import ShardInfo

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items(jobs, override_num_blocks=max(1, len(jobs))).map(_shard_as_row, fn_kwargs=kwargs, num_cpus=1)
    for row in ds.iter_rows():
        r = json.loads(row["result"])
        if r.get("info") is not None:
            r["info"] = ShardInfo(**r["info"])
        yield r


def _shard_as_row(job: dict, **kwargs) -> dict:
    """``importer.write_folder_shard`` with its result as a Ray Data row (Arrow takes JSON text)."""
    import dataclasses

    from xsharp.data import importer

    r = importer.write_folder_shard(job, **kwargs)
    if r.get("info") is not None:
        r = {**r, "info": dataclasses.asdict(r["info"])}
    return {"result": json.dumps(r)}


def proto_pool(src: Path, size: tuple[int, int], channels: int, shard_mb: float, work: Path, balanced: bool = False) -> dict:
    """Prototype, no Ray: the importer's own per-shard function (decode, hash, write) mapped over
    the same shard jobs by a fork ProcessPoolExecutor of every core. ``balanced``: the shard
    count rounded up to a multiple of the cores, rows spread evenly (no straggler shard)."""
    import math
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from xsharp.data import importer
    from xsharp.data.images import list_image_folder
    from xsharp.data.manifest import SPLITS
    from xsharp.fileguard import ANYWHERE

    t = time.perf_counter()
    options = importer.ImportOptions(format="images", size=size, channels=channels, shard_mb=shard_mb)
    listing = list_image_folder(src)
    files = [str(f) for f in listing.files]
    labels = np.asarray(listing.labels, np.int64)
    parts = importer._assign_splits(labels, listing.splits, options)
    shape = list(importer._decoder("images", options)(Path(files[0]), ANYWHERE).x.shape)
    per = importer._shard_rows(int(np.prod(shape)), shard_mb)
    cores = os.cpu_count() or 1
    jobs = []
    for split in SPLITS:
        rows = parts[split]
        k = math.ceil(len(rows) / per)
        if balanced and k:
            k = -(-k // cores) * cores if len(rows) >= cores * 256 else k
        for i, chosen in enumerate(np.array_split(rows, k) if balanced else [rows[j * per : (j + 1) * per] for j in range(k)]):
            jobs.append({"split": split, "index": i, "files": [files[r] for r in chosen], "labels": labels[chosen].tolist()})
    with tempfile.TemporaryDirectory(dir=work) as staging:
        fn = partial(
            importer.write_folder_shard,
            kind="images",
            options=options,
            staging=staging,
            guard=ANYWHERE,
            root=str(src),
            shape=shape,
            n_classes=len(listing.classes),
        )
        with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(fn, jobs))
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(errors[0])
    return {"seconds": time.perf_counter() - t, "files": len(files), "shards": len(jobs)}


def run_child(argv: list[str], env: dict | None = None, preexec=None) -> tuple[dict | None, subprocess.CompletedProcess]:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True, env=env, preexec_fn=preexec)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:]), r
    return None, r


def breakdown(root: Path, size: tuple[int, int], channels: int, n: int = 2000) -> dict[str, float]:
    """Microseconds an image of each step of one import worker's loop, on one core."""
    import hashlib
    import io
    import tempfile

    from PIL import Image

    from xsharp.data.images import ImageOptions, decode_image, list_image_folder
    from xsharp.data.shards import write_shard

    files = list_image_folder(root).files[:: max(1, len(list_image_folder(root).files) // n)][:n]
    o = ImageOptions(size, "squash", channels)
    out = {}

    def timed(label, fn):
        t = time.perf_counter()
        r = [fn(f) for f in files]
        out[label] = (time.perf_counter() - t) / len(files) * 1e6
        return r

    blobs = timed("read bytes", lambda f: f.read_bytes())
    timed("Image.open + load (decode only)", lambda f: Image.open(io.BytesIO(f.read_bytes())).load())
    rows = timed("decode_image (read, decode, mode, resize)", lambda f: decode_image(f, o))
    timed("sha256 of the file (a second read)", lambda f: hashlib.sha256(f.read_bytes()).hexdigest())
    t = time.perf_counter()
    for b in blobs:
        hashlib.sha256(b).hexdigest()
    out["sha256 of bytes already read"] = (time.perf_counter() - t) / len(files) * 1e6
    x = np.stack(rows)
    with tempfile.TemporaryDirectory(dir=root.parent) as d:
        t = time.perf_counter()
        write_shard(Path(d), "train", 0, x, np.zeros(len(x), np.int64))
        out["write_shard (npz, sha256, fsync)"] = (time.perf_counter() - t) / len(files) * 1e6
    return out


def part_import(args) -> None:
    header("import: image folders, xsharp (Ray tasks) vs PyTorch DataLoader")
    work = Path(args.work)
    per = args.images // 2
    trees = {
        "PNG": ensure_tree(work / f"fm-png-{args.images}", per, False),
        "JPEG": ensure_tree(work / f"fm-jpg-{args.images}", per, True),
        "JPEG 256x256 RGB": ensure_tree(work / f"fm-jpg256-{args.images}", per, True, side=256),
    }  # photo-sized: the decode shrinks them
    have_torch = subprocess.run([args.torch_python, "-c", "import torch, torchvision"], capture_output=True).returncode == 0
    if not have_torch:
        print(
            f"  PyTorch peer missing: {args.torch_python} cannot import torch and torchvision. Get it with\n"
            "    sudo apt-get install -y python3-torchvision     (Debian), or\n"
            "    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu\n"
            "  and pass --torch-python /tmp/torch/bin/python"
        )
    configs = [("PNG", (32, 32), 3), ("PNG", (64, 64), 1), ("JPEG", (32, 32), 3), ("JPEG", (64, 64), 1), ("JPEG 256x256 RGB", (64, 64), 3)]
    rows = []
    for fmt, size, ch in configs:
        root = trees[fmt]
        tp = torch_pass(args.torch_python, root, size, ch) if have_torch else None
        sweep = args.sweep if (fmt, size, ch) == configs[0] else []
        xr, r = run_child(
            [
                "_import",
                "--work",
                str(work),
                "--src",
                str(root),
                "--size",
                str(size[0]),
                str(size[1]),
                "--channels",
                str(ch),
                "--shard-mb",
                str(args.shard_mb),
                "--sweep",
                *map(str, sweep),
            ]
        )
        if xr is None:
            print(f"  xsharp import failed on {root}:\n{r.stderr[-3000:]}")
            continue
        n = xr["cold"]["files"]
        row = {
            "format": fmt,
            "size": f"{size[0]}x{size[1]}",
            "channels": ch,
            "images": n,
            "ray_start_s": xr["ray_start"],
            "xsharp_with_ray_start": n / (xr["ray_start"] + xr["cold"]["seconds"]),
            "xsharp_cold": n / xr["cold"]["seconds"],
            "xsharp_warm": n / xr["warm"]["seconds"],
            "shards": xr["cold"]["shards"],
            "ray_data_warm": n / xr["warm, Ray Data map"]["seconds"],
            "sweep": {k: n / v["seconds"] for k, v in xr.items() if k.startswith("warm, shard")},
            "sweep_shards": {k: v["shards"] for k, v in xr.items() if k.startswith("warm, shard")},
        }
        if tp:
            row["torch"] = tp["images"] / tp["seconds"]
            row["torch_version"] = tp["version"]
        rows.append(row)
        t = row.get("torch")
        print(
            f"  {fmt} -> {row['size']} x{ch}: {n:,} images, {row['shards']} shards ({args.shard_mb:g} MiB)  "
            f"xsharp {row['xsharp_with_ray_start']:,.0f}/s with Ray start-up ({xr['ray_start']:.1f} s), {row['xsharp_cold']:,.0f}/s without, "
            f"{row['xsharp_warm']:,.0f}/s warm"
            + (
                f" | PyTorch {t:,.0f}/s | ratio xsharp/PyTorch {row['xsharp_with_ray_start'] / t:.2f}x / {row['xsharp_cold'] / t:.2f}x / {row['xsharp_warm'] / t:.2f}x"
                if t
                else ""
            ),
            flush=True,
        )
        print(
            f"      the same shard jobs as a Ray Data map, warm: {row['ray_data_warm']:,.0f}/s"
            + (f" = {row['ray_data_warm'] / t:.2f}x PyTorch" if t else "")
            + f"; Ray tasks / Ray Data = {row['xsharp_warm'] / row['ray_data_warm']:.2f}x",
            flush=True,
        )
        for balanced in (False, True):
            pr = proto_pool(root, size, ch, args.shard_mb, work, balanced)
            key = "proto_pool_balanced" if balanced else "proto_pool"
            row[key] = pr["files"] / pr["seconds"]
            print(
                f"      prototype without Ray: the same shard function on a process pool{', shards balanced over the cores' if balanced else ''} "
                f"({pr['shards']} shards): {row[key]:,.0f}/s" + (f" = {row[key] / t:.2f}x PyTorch" if t else ""),
                flush=True,
            )
        for k, v in row["sweep"].items():
            print(f"      {k} ({row['sweep_shards'][k]} shards): {v:,.0f}/s" + (f" = {v / t:.2f}x PyTorch" if t else ""))
    if rows and rows[0].get("torch_version"):
        print(f"  peer: {rows[0]['torch_version']} (DataLoader num_workers={os.cpu_count()}, batch 256)")
    print("  one worker's loop, microseconds an image (one core):")
    bd = {}
    for fmt, size, ch in [("PNG", (32, 32), 3), ("JPEG", (64, 64), 1)]:
        bd[f"{fmt} {size[0]}x{size[1]} x{ch}"] = b = breakdown(trees[fmt] / "train", size, ch)
        print(f"    {fmt} {size[0]}x{size[1]} x{ch}: " + ", ".join(f"{k} {v:.0f}" for k, v in b.items()))
    RESULTS["import"] = {"rows": rows, "breakdown": bd}


# =========================================================================== training helpers
def spec_of(model: list, data: dict, epochs: int = 1, batch: int = 128, lr: float = 0.01, **extra) -> dict:
    return {
        "name": "bench",
        "data": data,
        "model": model,
        "pretrain": {"epochs": 0},
        "train": {"epochs": epochs, "batch_size": batch, "learning_rate": lr, "momentum": 0.9, **extra},
        "seed": 0,
        "mode": "local",
    }


def train(spec_dict: dict, cat, steps: int | None = None, test: bool = False) -> dict:
    """load_data + train_worker in this process: samples/s of fit, seconds to load, test accuracy."""
    from xsharp.algos.training import Stopped, TrainHooks
    from xsharp.cluster.runner import load_data
    from xsharp.parallel.execution import train_worker
    from xsharp.spec import parse_spec

    spec = parse_spec(spec_dict)
    t = time.perf_counter()
    data = load_data(spec, catalog=cat, user=OWNER)
    loaded = time.perf_counter() - t
    count = {"n": 0}

    def stop() -> bool:
        count["n"] += 1
        return steps is not None and count["n"] >= steps

    t = time.perf_counter()
    try:
        model, history = train_worker(spec, data, hooks=TrainHooks(should_stop=stop if steps else None))
    except Stopped as e:
        model, history = None, e.state.history
    wall = time.perf_counter() - t
    out = {
        "load_s": loaded,
        "samples": history.samples,
        "fit_s": history.seconds,
        "samples_per_s": history.samples_per_second,
        "wall_s": wall,
        "streamed": type(data).__name__ == "StreamedData",
    }
    if test and model is not None:
        t = time.perf_counter()
        out["test_accuracy"] = model.accuracy(data.x_test, data.y_test)
        out["test_s"] = time.perf_counter() - t
    if history.finetune:
        out["val_accuracy"] = history.finetune[-1].get("val_accuracy")
    return out


MLP = [{"dense": {"units": 1024}}, {"dense": {"units": 1024}}, {"softmax": {}}]


def recipe(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())


def part_stream(args) -> None:
    header("stream: training from shards (stream: true) vs the same rows in memory (stream: false)")
    from xsharp.data.importer import ImportOptions, import_dataset

    cat = catalog(Path(args.work))
    fresh(cat, "fm")
    t = time.perf_counter()
    m = import_dataset("fashion-mnist", "fm", OWNER, cat, ImportOptions())
    print(
        f"  imported fashion-mnist as {m.ref}: {m.rows('train'):,} train rows, {len(m.shards_of('train'))} train shards of "
        f"{m.shard_bytes >> 20} MiB, in {time.perf_counter() - t:.1f} s"
    )
    out = {}
    cnn = recipe("fashion-mnist-cnn")
    cases = [
        (
            f"MLP 784-1024-1024-10, batch 128, {args.mlp_steps or 'an epoch of'} steps",
            lambda s: spec_of(MLP, {"dataset": "fm", "stream": s, "features": [{"standardize": {"per": "global"}}]}),
            args.mlp_steps,
        ),
        (
            f"CNN recipe, {args.cnn_steps} steps of 64",
            lambda s: {**cnn, "data": {"dataset": "fm", "stream": s, "features": cnn["data"]["features"]}, "train": {**cnn["train"], "epochs": 1}},
            args.cnn_steps,
        ),
    ]
    for label, make, steps in cases:
        runs = {False: [], True: []}
        order = [False, True, True, False] * args.repeats  # interleaved (ABBA): drift in the machine's load hits both sides
        for s in order[: 2 * args.repeats]:
            runs[s].append(train(make(s), cat, steps))
        got = {s: sorted(r, key=lambda g: g["samples_per_s"])[len(r) // 2] for s, r in runs.items()}  # the median run
        ratio = got[True]["samples_per_s"] / got[False]["samples_per_s"]
        spread = {s: ", ".join(f"{g['samples_per_s']:,.0f}" for g in r) for s, r in runs.items()}
        print(
            f"  {label}: memory {got[False]['samples_per_s']:,.0f} samples/s (runs {spread[False]}; read whole in {got[False]['load_s']:.1f} s), "
            f"stream {got[True]['samples_per_s']:,.0f} samples/s (runs {spread[True]}; opened in {got[True]['load_s']:.1f} s); "
            f"stream/memory {ratio:.2f}x (medians of {args.repeats})",
            flush=True,
        )
        out[label] = {"memory": got[False], "stream": got[True], "ratio": ratio, "runs": {str(k): v for k, v in runs.items()}}
    # digits: 1,797 rows, the recipe without augment (a streamed dataset takes none)
    dm = recipe("digits-mlp")
    for shard_mb, nm in ((16.0, "digits-one"), (0.01, "digits-many")):
        fresh(cat, nm)
        dmf = import_dataset("digits", nm, OWNER, cat, ImportOptions(shard_mb=shard_mb, test_fraction=0.2, validation_fraction=0.1))
        got = {}
        for s in (False, True, True, False):
            spec = {**dm, "data": {"dataset": nm, "stream": s, "features": dm["data"]["features"]}}
            t = time.perf_counter()
            r = train(spec, cat, test=True)
            r["total_s"] = time.perf_counter() - t
            if s not in got or r["samples_per_s"] > got[s]["samples_per_s"]:
                got[s] = r  # the better of two runs each (ABBA)
        ratio = got[True]["samples_per_s"] / got[False]["samples_per_s"]
        label = f"digits-mlp recipe ({dm['train']['epochs']} epochs, no augment), {len(dmf.shards_of('train'))} train shard(s)"
        print(
            f"  {label}: memory {got[False]['samples_per_s']:,.0f} samples/s, {got[False]['total_s']:.1f} s in all, test {got[False]['test_accuracy']:.3f}; "
            f"stream {got[True]['samples_per_s']:,.0f} samples/s, {got[True]['total_s']:.1f} s, test {got[True]['test_accuracy']:.3f}; stream/memory {ratio:.2f}x",
            flush=True,
        )
        out[label] = {"memory": got[False], "stream": got[True], "ratio": ratio}
    RESULTS["stream"] = out


# =========================================================================== memory
def build_big(cat, name: str, rows: int, shard_mb: float) -> None:
    """``rows`` uint8 28x28 rows (Fashion-MNIST's training images, tiled) written as shards."""
    from xsharp.algos.datasets import load
    from xsharp.data.manifest import Manifest
    from xsharp.data.shards import write_shard

    if cat.versions(OWNER, name):
        return
    d = load("fashion-mnist", validation_fraction=0.0)
    src_x = np.rint(d.x_train * 255).astype(np.uint8)
    src_y = d.y_train.astype(np.int64)
    per = max(1, int(shard_mb * (1 << 20) // src_x[0].nbytes))
    staging = cat.staging(OWNER, name)
    infos, counts = [], {"train": np.zeros(10, np.int64)}
    for k, lo in enumerate(range(0, rows, per)):
        idx = np.arange(lo, min(rows, lo + per)) % len(src_y)
        infos.append(write_shard(staging, "train", k, src_x[idx], src_y[idx]))
        counts["train"] += np.bincount(src_y[idx], minlength=10)
    tx, ty = np.rint(d.x_test * 255).astype(np.uint8), d.y_test.astype(np.int64)
    for split, lo, hi in (("val", 0, 2000), ("test", 2000, 10000)):
        infos.append(write_shard(staging, split, 0, tx[lo:hi], ty[lo:hi]))
        counts[split] = np.bincount(ty[lo:hi], minlength=10)
    m = Manifest(
        name=name,
        owner=OWNER,
        version=0,
        kind="arrays",
        classes=list(d.classes),
        counts={k: v.tolist() for k, v in counts.items()},
        shape=[28, 28],
        dtype="uint8",
        shards=infos,
        source={"path": "synthetic: Fashion-MNIST train rows tiled"},
        shard_bytes=int(shard_mb * (1 << 20)),
    )
    cat.commit(staging, m)


def child_train(args) -> None:
    """(child) RSS after the imports, then one streamed (or whole) epoch; peak RSS."""
    import numpy  # noqa: F401

    base_numpy = rss_mb()
    from xsharp.cluster.runner import load_data  # noqa: F401
    from xsharp.parallel.execution import train_worker  # noqa: F401

    base = rss_mb()
    out = {"rss_numpy_mb": base_numpy, "rss_imports_mb": base}
    spec = spec_of([{"dense": {"units": 64}}, {"softmax": {}}], {"dataset": args.dataset, "stream": args.stream == 1}, epochs=1, batch=256, lr=0.05)
    try:
        out.update(train(spec, catalog(Path(args.work)), test=True))
    except MemoryError:
        out["error"] = "MemoryError"
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["vmhwm_mb"] = hwm_mb()
    print("RESULT " + json.dumps(out), flush=True)


class Cap:
    """A memory cap for child processes: a cgroup (v2 memory.max or v1 memory.limit_in_bytes)
    made here when this process may, else RLIMIT_AS (address space: a stricter, virtual cap)."""

    def __init__(self, mb: int):
        self.bytes = mb << 20
        self.kind, self.group = "RLIMIT_AS", None
        for base, limit in ((Path("/sys/fs/cgroup"), "memory.max"), (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")):
            try:
                if not (base / "cgroup.procs").is_file():  # not a cgroup file system (e.g. the tmpfs above v1's controllers)
                    continue
                g = base / f"xsharp-bench-{os.getpid()}"
                g.mkdir()
                if not (g / "cgroup.procs").is_file():
                    raise OSError("not a cgroup")
                (g / limit).write_text(str(self.bytes))
                if limit == "memory.limit_in_bytes":
                    try:
                        (g / "memory.memsw.limit_in_bytes").write_text(str(self.bytes))  # no swapping past it either
                    except OSError:
                        pass
                self.kind, self.group, self.limit = f"cgroup {g}", g, limit
                break
            except OSError:
                try:
                    g.rmdir()
                except OSError:
                    pass

    def preexec(self):
        if self.group is not None:
            group = self.group
            return lambda: (group / "cgroup.procs").write_text(str(os.getpid()))
        cap = self.bytes
        return lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def peak_mb(self) -> float | None:
        if self.group is None:
            return None
        for f in ("memory.peak", "memory.max_usage_in_bytes"):
            if (self.group / f).is_file():
                return int((self.group / f).read_text()) / (1 << 20)
        return None

    def reset_peak(self) -> None:
        if self.group is not None and (self.group / "memory.max_usage_in_bytes").is_file():
            try:
                (self.group / "memory.max_usage_in_bytes").write_text("0")
            except OSError:
                pass

    def oom_kills(self) -> str:
        if self.group is None:
            return ""
        for f in ("memory.events", "memory.oom_control", "memory.failcnt"):
            if (self.group / f).is_file():
                return (self.group / f).read_text().replace("\n", " ").strip()
        return ""

    def close(self) -> None:
        if self.group is not None:
            try:
                self.group.rmdir()
            except OSError:
                pass


def part_memory(args) -> None:
    header(f"memory: training under a {args.cap_mb} MiB cap on datasets 0.5x to 4x of it")
    cat = catalog(Path(args.work))
    row_floats = 28 * 28 * 4
    sizes = [(f"mem-{f:g}x", f, int(f * args.cap_mb * (1 << 20) / row_floats)) for f in (0.5, 1.5, 4.0)]
    t = time.perf_counter()
    for name, _, rows in sizes:
        build_big(cat, name, rows, args.mem_shard_mb)
    print(f"  wrote {', '.join(f'{n} ({r:,} rows)' for n, _, r in sizes)} as {args.mem_shard_mb:g} MiB uint8 shards in {time.perf_counter() - t:.1f} s")
    cap = Cap(args.cap_mb)
    print(f"  cap: {cap.kind} = {args.cap_mb} MiB; model dense 64 + softmax, 1 epoch, batch 256, data.stream: true")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))}
    out = []
    try:
        for name, f, rows, stream in [(n, f, r, 1) for n, f, r in sizes] + [(sizes[1][0], sizes[1][1], sizes[1][2], 0)]:
            cap.reset_peak()
            t = time.perf_counter()
            res, r = run_child(["_train", "--work", args.work, "--dataset", name, "--stream", str(stream)], env=env, preexec=cap.preexec())
            wall = time.perf_counter() - t
            floats_mb = rows * row_floats / (1 << 20)
            entry = {
                "dataset": name,
                "x_cap": f,
                "rows": rows,
                "float32_mb": floats_mb,
                "stream": bool(stream),
                "rc": r.returncode,
                "wall_s": wall,
                "cgroup_peak_mb": cap.peak_mb(),
                **(res or {}),
            }
            out.append(entry)
            if res and "error" not in res:
                print(
                    f"  {name} ({rows:,} rows, {floats_mb:,.0f} MiB as float32, {'streamed' if stream else 'read whole'}): completed, "
                    f"{res['samples_per_s']:,.0f} samples/s, test {res.get('test_accuracy', float('nan')):.3f}; peak RSS {res['ru_maxrss_mb']:.0f} MiB "
                    f"(imports alone {res['rss_imports_mb']:.0f} MiB, numpy alone {res['rss_numpy_mb']:.0f} MiB)"
                    + (f", cgroup peak {entry['cgroup_peak_mb']:.0f} MiB (page cache included)" if entry["cgroup_peak_mb"] else ""),
                    flush=True,
                )
            else:
                tail = (r.stderr.strip().splitlines() or [""])[-1][:200]
                print(
                    f"  {name} ({floats_mb:,.0f} MiB as float32, {'streamed' if stream else 'read whole'}): did not complete under the cap "
                    f"(exit {r.returncode}{', ' + res['error'] if res and 'error' in res else ''}; {tail}) {cap.oom_kills()}",
                    flush=True,
                )
        done = [e for e in out if e.get("stream") and "ru_maxrss_mb" in e and "error" not in e]
        if len(done) >= 2:
            print(
                f"  peak RSS, largest / smallest dataset: {done[-1]['ru_maxrss_mb'] / done[0]['ru_maxrss_mb']:.2f}x for "
                f"{done[-1]['rows'] / done[0]['rows']:.0f}x the rows"
            )
    finally:
        cap.close()
    RESULTS["memory"] = {"cap_mb": args.cap_mb, "cap_kind": cap.kind, "runs": out}


# =========================================================================== pngs
def part_pngs(args) -> None:
    header(f"pngs: the CNN recipe on a PNG tree imported --channels 1 vs on the IDX files, {args.epochs} epoch(s) each")
    from xsharp.cluster import runtime
    from xsharp.data.importer import ImportOptions, import_dataset

    work = Path(args.work)
    tree = ensure_tree(work / "fm-png-all", None, False)
    cat = catalog(work)
    cnn = recipe("fashion-mnist-cnn")
    fresh(cat, "fm-png")
    t = time.perf_counter()
    with runtime.connect(None):
        t1 = time.perf_counter()
        m = import_dataset(str(tree), "fm-png", OWNER, cat, ImportOptions(channels=1, validation_fraction=cnn["data"]["validation_fraction"]))
    t2 = time.perf_counter()
    n = m.source["files"]
    print(
        f"  imported {n:,} PNGs in {t2 - t1:.1f} s ({n / (t2 - t1):,.0f}/s; {t2 - t:.1f} s with Ray's start-up): "
        f"{m.rows('train'):,} train / {m.rows('val'):,} val / {m.rows('test'):,} test, shape {m.shape}",
        flush=True,
    )
    out = {"import_s": t2 - t1, "images": n}
    epochs = args.epochs or cnn["train"]["epochs"]
    for label, data in (
        ("IDX (dataset: fashion-mnist)", cnn["data"]),
        ("PNG tree (dataset: fm-png)", {"dataset": "fm-png", "features": cnn["data"]["features"]}),
    ):
        spec = {**cnn, "data": data, "train": {**cnn["train"], "epochs": epochs}}
        t = time.perf_counter()
        r = train(spec, cat, test=True)
        r["total_s"] = time.perf_counter() - t
        out[label] = r
        print(
            f"  {label}: test accuracy {r['test_accuracy']:.4f} (val {r.get('val_accuracy') or float('nan'):.4f}), "
            f"{r['samples_per_s']:,.0f} samples/s, {r['total_s']:.0f} s",
            flush=True,
        )
    a, b = out["IDX (dataset: fashion-mnist)"]["test_accuracy"], out["PNG tree (dataset: fm-png)"]["test_accuracy"]
    print(
        f"  difference PNG - IDX: {100 * (b - a):+.2f} points ({epochs} epoch(s); the PNG import holds out its own 5 % for validation, "
        "so the training rows and their order differ)"
    )
    out["difference_points"] = 100 * (b - a)
    out["epochs"] = epochs
    RESULTS["pngs"] = out


# =========================================================================== table
def part_table(args) -> None:
    header("table: Fashion-MNIST pixels as Parquet, xsharp vs scikit-learn LogisticRegression")
    import pyarrow.parquet as pq
    from fashion_mnist_parquet import build_table

    from xsharp.data.imported import read_whole
    from xsharp.data.importer import ImportOptions, import_dataset

    work = Path(args.work)
    path = work / "fm.parquet"
    if not path.is_file():
        pq.write_table(build_table(), path, compression="zstd", row_group_size=8192)
    cat = catalog(work)
    fresh(cat, "fm-table")
    t = time.perf_counter()
    m = import_dataset(str(path), "fm-table", OWNER, cat, ImportOptions(format="table", label_column="label"))
    t_imp = time.perf_counter() - t
    print(
        f"  imported {path.name} ({path.stat().st_size >> 20} MiB) in {t_imp:.1f} s ({sum(m.rows(s) for s in ('train', 'val', 'test')) / t_imp:,.0f} rows/s): "
        f"{m.rows('train'):,} train / {m.rows('val'):,} val / {m.rows('test'):,} test rows of {m.shape} {m.dtype}, {len(m.shards)} shards",
        flush=True,
    )
    out = {"import_s": t_imp}
    specs = {
        "softmax (features: standardize), 10 epochs": spec_of(
            [{"softmax": {}}], {"dataset": "fm-table", "features": ["standardize"]}, epochs=10, batch=128, lr=0.01
        ),
        "MLP 256 + softmax (standardize), 10 epochs": spec_of(
            [{"dense": {"units": 256}}, {"softmax": {}}], {"dataset": "fm-table", "features": ["standardize"]}, epochs=10, batch=128, lr=0.01
        ),
    }
    for label, spec in specs.items():
        t = time.perf_counter()
        r = train(spec, cat, test=True)
        r["total_s"] = time.perf_counter() - t
        out[label] = r
        print(f"  xsharp {label}: test {r['test_accuracy']:.4f}, {r['total_s']:.1f} s", flush=True)
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    d = read_whole(cat, m)
    x_train = np.concatenate([d.x_train, d.x_val]).reshape(len(d.y_train) + len(d.y_val), -1)  # the val rows are training rows to sklearn
    y_train = np.concatenate([d.y_train, d.y_val])
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=args.sk_iter)
    clf.fit(scaler.transform(x_train), y_train)
    acc = float((clf.predict(scaler.transform(d.x_test.reshape(len(d.y_test), -1))) == d.y_test).mean())
    sk_s = time.perf_counter() - t
    out["sklearn"] = {"test_accuracy": acc, "seconds": sk_s, "max_iter": args.sk_iter}
    print(f"  scikit-learn LogisticRegression (StandardScaler, lbfgs, max_iter {args.sk_iter}, train+val rows): test {acc:.4f}, {sk_s:.1f} s")
    for label in specs:
        print(f"  {label} - sklearn: {100 * (out[label]['test_accuracy'] - acc):+.2f} points; time ratio sklearn/xsharp {sk_s / out[label]['total_s']:.2f}x")
    RESULTS["table"] = out


# =========================================================================== main
PARTS = {"import": part_import, "stream": part_stream, "memory": part_memory, "pngs": part_pngs, "table": part_table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=[*PARTS, "all", "_import", "_train"])
    p.add_argument("--work", default="/tmp/xsharp-bench-data")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--images", type=int, default=20000, help="import: images in each folder (half train, half test)")
    p.add_argument("--shard-mb", type=float, default=16.0, help="import: shard size")
    p.add_argument("--sweep", type=float, nargs="*", default=[2.0, 0.5], help="import: shard sizes also timed warm (PNG 32x32 x3)")
    p.add_argument("--torch-python", default=TORCH_PYTHON)
    p.add_argument("--cnn-steps", type=int, default=120, help="stream: CNN steps timed each run")
    p.add_argument("--mlp-steps", type=int, default=300, help="stream: MLP steps timed each run (0: one whole epoch, with its validation)")
    p.add_argument("--repeats", type=int, default=3, help="stream: runs of each side (interleaved; medians)")
    p.add_argument("--cap-mb", type=int, default=512, help="memory: the cap")
    p.add_argument("--mem-shard-mb", type=float, default=4.0, help="memory: shard size of the big datasets")
    p.add_argument("--epochs", type=int, default=None, help="pngs: epochs each side (default the recipe's 8)")
    p.add_argument("--sk-iter", type=int, default=200, help="table: LogisticRegression max_iter")
    # children
    p.add_argument("--src")
    p.add_argument("--size", type=int, nargs=2)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--dataset")
    p.add_argument("--stream", type=int, default=1)
    args = p.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.part == "_import":
        return child_import(args)
    if args.part == "_train":
        return child_train(args)
    import numpy
    import ray  # noqa: F401  (the version line)

    print(f"xsharp data bench: {os.cpu_count()} cores, numpy {numpy.__version__}, ray {ray.__version__}, work {args.work}; {load()}")
    for name in PARTS if args.part == "all" else [args.part]:
        t = time.perf_counter()
        PARTS[name](args)
        print(f"  ({name}: {time.perf_counter() - t:.0f} s; {load()} after)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=1, default=str))


if __name__ == "__main__":
    main()
