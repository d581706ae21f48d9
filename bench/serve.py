"""Online predictions over HTTP against onnxruntime in-process, on the same model.

    .venv/bin/python bench/serve.py [--duration 10] [--models dbn,cnn] [--epochs 1]
                                    [--work /tmp/xsharp-bench-serve] [--port P]

Models: the digits DBN (``examples/digits-dbn.yaml``) and the Fashion-MNIST CNN
(``examples/fashion-mnist-cnn.yaml``, ``train.epochs`` set to ``--epochs``), trained with
``xsharp run --mode local`` into ``--work`` (reused when there: a rerun does not train again) and
registered in a fresh job store as a finished job's model is.

The server under test is the job service's app (``xsharp.api.create_app``) under uvicorn in its
own process, with no scheduler and no Ray (``xsharp server`` would embed a Ray taking the same
cores): ``POST /v1/models/{id}/predict`` with a bearer token and a JSON body of one real test row
(``{"rows": [row]}``), answered with the top 5 classes. The load comes from ``wrk`` (compiled, so
the client takes little of the server's cores), after a warm-up:

1. Latency, 1 client (``wrk -t1 -c1 --latency``): p50 and p99. Goal: p99 <= 20 ms.
2. Throughput, 16 clients (``wrk -t2 -c16``), one row a request: requests/s = rows/s.
   Goal: >= 50 % of onnxruntime's below.

The peer, in the same run and while the server idles: onnxruntime (CPUExecutionProvider, its
default threads) in this process on the ONNX export of the same model (``export_model``: the
model's feature steps are in the graph, so it takes the same raw row): (a) one row a call, calls
one after another, p50 / p99; (b) 16 Python threads each calling ``session.run`` on one row in a
loop (onnxruntime releases the GIL), rows/s; and for context one thread calling with 16 rows.
For context also xsharp's own ``Predictor.probabilities`` in this process, on one row (p50 / p99)
and 16 rows a call (rows/s: what the micro-batcher can reach at best): the server's compute without
HTTP, JSON, auth and the batcher. And, once after the models, the service's floor on this machine:
``GET /healthz`` (no auth) and ``GET /v1/models/{id}`` (bearer auth + a store read), at 1 and 16
clients: where the time of a request goes.

The machine is shared: the run prints the core count, the load average before and after and the
busiest other processes. No assertions; wrk's non-2xx responses or socket errors stop the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

XSHARP = str(Path(sys.executable).with_name("xsharp"))
WRK = shutil.which("wrk") or "/usr/bin/wrk"
USER = "bench"

SERVE = """
import sys, uvicorn
from xsharp.api import create_app
from xsharp.cluster.store import Store
uvicorn.run(create_app(Store(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

LUA = """
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""

GET_LUA = """
wrk.headers["Authorization"] = "Bearer {token}"
"""


# --------------------------------------------------------------------------- the machine
def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f}"


def busiest(n: int = 5, seconds: float = 1.0) -> str:
    """The other processes taking the most CPU over the next ``seconds`` (from /proc)."""

    def ticks() -> dict[int, tuple[str, int]]:
        out = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    stat = (d / "stat").read_text()
                except OSError:
                    continue
                name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
                out[int(d.name)] = (name, int(rest[11]) + int(rest[12]))  # utime + stime
        return out

    a = ticks()
    time.sleep(seconds)
    b = ticks()
    hz = os.sysconf("SC_CLK_TCK")
    use = sorted(((t - a[p][1]) / hz / seconds, name) for p, (name, t) in b.items() if p in a)[::-1]
    rows = [f"{name} {100 * share:.0f}%" for share, name in use[:n] if share >= 0.05]
    return ", ".join(rows) or "nothing above 5 % of a core"


# --------------------------------------------------------------------------- models
def train(work: Path, name: str, epochs: int) -> Path:
    """The model file of ``name`` in ``work``, trained by ``xsharp run --mode local`` unless there."""
    if name == "dbn":
        spec, folder = ROOT / "examples" / "digits-dbn.yaml", work / "dbn"
        run = folder / "run"
    else:
        folder = work / "cnn"
        spec = folder / f"spec-e{epochs}.yaml"
        run = folder / f"run-e{epochs}"
        folder.mkdir(parents=True, exist_ok=True)
        s = yaml.safe_load((ROOT / "examples" / "fashion-mnist-cnn.yaml").read_text())
        s["train"]["epochs"] = epochs
        s.setdefault("pretrain", {})["epochs"] = 0
        spec.write_text(yaml.safe_dump(s, sort_keys=False))
    model = run / "model.npz"
    if model.is_file():
        print(f"{name}: reusing {model}", flush=True)
        return model
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{name}: training {spec.name} (--mode local) into {run} ...", flush=True)
    t = time.perf_counter()
    r = subprocess.run([XSHARP, "run", str(spec), "--mode", "local", "--out", str(run)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0 or not model.is_file():
        sys.exit(f"{name}: xsharp run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    print(f"{name}: trained in {time.perf_counter() - t:.0f} s", flush=True)
    return model


def register(store, spec: dict, model_file: Path) -> int:
    """Register ``model_file`` as a finished job's model is: the job's artifacts, then SUCCEEDED."""
    job = store.submit(USER, spec, 0, 1, 0)
    artifacts = store.job_dir(job.id) / "artifacts"
    artifacts.mkdir(parents=True)
    shutil.copy(model_file, artifacts / "model.npz")
    store.transition(job.id, ["QUEUED"], "SUCCEEDED", "registered by bench/serve.py")
    return store.models(user=USER, name=spec["name"])[-1].id


# --------------------------------------------------------------------------- wrk
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * UNIT[m.group(2)]


def wrk(url: str, lua: Path, threads: int, clients: int, seconds: float) -> dict:
    cmd = [WRK, f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        sys.exit(f"wrk failed ({out.returncode}):\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if non2xx or (errors and any(int(g) for g in errors.groups())):
        sys.exit(f"wrk saw failed requests ({' '.join(cmd)}):\n{text}")
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", text, re.M)}
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    done = re.search(r"(\d+) requests in", text)
    if not rps or 50 not in pct or 99 not in pct or not done:
        sys.exit(f"cannot read wrk's output:\n{text}")
    return {"p50": pct[50], "p99": pct[99], "rps": float(rps.group(1)), "requests": int(done.group(1))}


# --------------------------------------------------------------------------- in-process timing
def sequential(call, seconds: float, least: int = 200) -> list[float]:
    """Latencies (ms) of ``call()`` one after another for ``seconds`` (at least ``least`` calls)."""
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < least:
        t = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - t))
    return times


def threaded(call, threads: int, seconds: float) -> float:
    """Calls per second of ``call()`` looped on ``threads`` threads for ``seconds``."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def loop(i: int) -> None:
        start.wait()
        n = 0
        while not stop.is_set():
            call()
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    start.wait()
    t = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for th in pool:
        th.join()
    return sum(counts) / (time.perf_counter() - t)  # the last calls end after stop: a slight overcount of the wall


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# --------------------------------------------------------------------------- one model
def bench_model(name: str, model_file: Path, model_id: int, url: str, token: str, opts, tmp: Path) -> dict:
    import httpx
    import onnxruntime as ort

    from xsharp.algos import Model
    from xsharp.export.onnx import export_model, raw_rows
    from xsharp.serving.predictor import Predictor

    model = Model.load(model_file)
    predictor = Predictor(model)  # what the server runs: onnxruntime where the model exports
    numpy_predictor = Predictor(model, "xsharp")  # xsharp's own NumPy forward pass, for context
    raw = np.asarray(raw_rows(model, "test"), dtype=np.float32)
    row = raw[:1]
    batch = raw[:16]
    print(
        f"\n== {name}: {' -> '.join(m.kind for m in model.modules)}; raw row {list(raw.shape[1:])}, {int(model.flat.size):,} parameters  ({load()})", flush=True
    )

    # the peer's session, and agreement of the three paths on the row
    session = ort.InferenceSession(export_model(model).SerializeToString(), providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    feed = {in_name: row.reshape((1, *raw.shape[1:]))}
    feed16 = {in_name: batch.reshape((len(batch), *raw.shape[1:]))}
    (p_ort,) = session.run(["probabilities"], feed)
    p_xs = predictor.probabilities(row)
    body = json.dumps({"rows": [[float(str(v)) for v in row[0].ravel()]]})  # float32's shortest repr: the same values
    body_file = tmp / f"{name}-body.json"
    body_file.write_text(body)
    lua = tmp / f"{name}.lua"
    lua.write_text(LUA.format(body=body_file, token=token))
    body16_file = tmp / f"{name}-body16.json"
    body16_file.write_text(json.dumps({"rows": [[float(str(v)) for v in r.ravel()] for r in batch]}))
    lua16 = tmp / f"{name}-16.lua"
    lua16.write_text(LUA.format(body=body16_file, token=token))
    endpoint = f"{url}/v1/models/{model_id}/predict"
    r = httpx.post(endpoint, content=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, timeout=60)
    if r.status_code != 200:
        sys.exit(f"{name}: the server answered {r.status_code}: {r.text[:500]}")
    top = r.json()["predictions"][0]["top"][0]
    print(
        f"agreement on the row: HTTP top-1 {top['label']} ({top['probability']:.4f}), onnxruntime {model.classes[int(p_ort.argmax())]}, "
        f"Predictor {model.classes[int(p_xs.argmax())]}; max |p_ort - p_xsharp| {float(np.abs(p_ort - p_xs).max()):.1e}; "
        f"body {len(body):,} bytes",
        flush=True,
    )

    # the peer and xsharp in-process, while the server idles
    s = opts.duration
    ort_lat = sequential(lambda: session.run(None, feed), s)
    ort_rps = threaded(lambda: session.run(None, feed), 16, s)
    ort_b16 = 16 * threaded(lambda: session.run(None, feed16), 1, s)
    xs_lat = sequential(lambda: predictor.probabilities(row), s)
    xs_b16 = 16 * threaded(lambda: predictor.probabilities(batch), 1, s)
    np_lat = sequential(lambda: numpy_predictor.probabilities(row), s)
    np_b16 = 16 * threaded(lambda: numpy_predictor.probabilities(batch), 1, s)
    print(f"onnxruntime in-process, 1 row a call: p50 {pct(ort_lat, 0.5):.3f} ms, p99 {pct(ort_lat, 0.99):.3f} ms ({len(ort_lat):,} calls)")
    print(f"onnxruntime in-process, 16 threads x 1 row: {ort_rps:,.0f} rows/s; 1 thread x 16 rows a call: {ort_b16:,.0f} rows/s")
    print(
        f"the server's Predictor ({predictor.engine}) in-process, 1 row: p50 {pct(xs_lat, 0.5):.3f} ms, p99 {pct(xs_lat, 0.99):.3f} ms ({len(xs_lat):,} calls); 16 rows a call: {xs_b16:,.0f} rows/s"
    )
    print(
        f"xsharp's NumPy forward pass in-process, 1 row: p50 {pct(np_lat, 0.5):.3f} ms, p99 {pct(np_lat, 0.99):.3f} ms; 16 rows a call: {np_b16:,.0f} rows/s",
        flush=True,
    )

    # HTTP: warm up, then 1 client and 16 clients
    warm = wrk(endpoint, lua, 2, 16, 2)
    one = wrk(endpoint, lua, 1, 1, s)
    many = wrk(endpoint, lua, 2, 16, s)
    rows16 = wrk(endpoint, lua16, 2, 16, s)
    print(f"HTTP warm-up: {warm['requests']:,} requests at 16 clients")
    print(f"HTTP, 1 client: p50 {one['p50']:.2f} ms, p99 {one['p99']:.2f} ms ({one['rps']:,.0f} req/s, {one['requests']:,} requests)")
    print(f"HTTP, 16 clients: {many['rps']:,.0f} req/s (= rows/s), p50 {many['p50']:.2f} ms, p99 {many['p99']:.2f} ms ({many['requests']:,} requests)")
    print(
        f"HTTP, 16 clients, 16 rows a request: {16 * rows16['rps']:,.0f} rows/s ({rows16['rps']:,.0f} req/s, p99 {rows16['p99']:.2f} ms): "
        f"{16 * rows16['rps'] / ort_rps:.2f}x onnxruntime's 16 threads x 1 row"
    )
    print(
        f"HTTP / onnxruntime: latency p50 {one['p50'] / pct(ort_lat, 0.5):.1f}x, p99 {one['p99'] / pct(ort_lat, 0.99):.1f}x; "
        f"throughput {many['rps'] / ort_rps:.2f}x  ({load()})",
        flush=True,
    )
    return {
        "model": name,
        "http_p50": one["p50"],
        "http_p99": one["p99"],
        "ort_p50": pct(ort_lat, 0.5),
        "ort_p99": pct(ort_lat, 0.99),
        "xs_p50": pct(xs_lat, 0.5),
        "xs_p99": pct(xs_lat, 0.99),
        "http_rps": many["rps"],
        "ort_rps": ort_rps,
        "ort_b16": ort_b16,
        "xs_b16": xs_b16,
        "http_rows16": 16 * rows16["rps"],
        "lua": lua,
    }


def bench_ray_serve(model_id: int, home: Path, lua: Path, replicas: int, duration: float, work: Path) -> None:
    """The same requests to `xsharp serve MODEL --replicas N` on an embedded Ray: Serve's proxy,
    then a replica, each a process of its own on the same cores."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models/{model_id}"
    out = work / "serve.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("xsharp")),
                "serve",
                str(model_id),
                "--home",
                str(home),
                "--port",
                str(port),
                "--replicas",
                str(replicas),
                "--cpus-per-replica",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.time() + 180
        while "serving model" not in out.read_text():
            if proc.poll() is not None or time.time() > deadline:
                sys.exit(f"xsharp serve did not start; see {out}")
            time.sleep(0.5)
        wrk(f"{url}/predict", lua, 2, 16, 2)
        one, many = wrk(f"{url}/predict", lua, 1, 1, duration), wrk(f"{url}/predict", lua, 2, 16, duration)
        print(
            f"Ray Serve, {replicas} replica(s): 1 client p50 {one['p50']:.2f} ms, p99 {one['p99']:.2f} ms; 16 clients {many['rps']:,.0f} req/s, "
            f"p99 {many['p99']:.2f} ms  ({load()})",
            flush=True,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="seconds of each timed run (each wrk run, each in-process loop)")
    ap.add_argument("--models", default="dbn,cnn", help="comma-separated: dbn, cnn")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs of the CNN")
    ap.add_argument("--work", type=Path, default=Path("/tmp/xsharp-bench-serve"), help="trained models (reused) and the store")
    ap.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    ap.add_argument("--serve-replicas", type=int, default=1, help="also measure the first model on `xsharp serve --replicas N` (0: skip)")
    opts = ap.parse_args()
    names = [n.strip() for n in opts.models.split(",") if n.strip()]
    if not names or set(names) - {"dbn", "cnn"}:
        ap.error("--models takes dbn, cnn")
    if not Path(WRK).is_file():
        sys.exit("wrk is not installed (Debian: apt install wrk)")

    import onnxruntime as ort

    from xsharp.cluster.store import Store

    print(f"{os.cpu_count()} cores, {load()}; busiest processes: {busiest()}")
    print(f"wrk {WRK}, onnxruntime {ort.__version__}, Python {sys.version.split()[0]}", flush=True)
    opts.work.mkdir(parents=True, exist_ok=True)
    files = {n: train(opts.work, n, opts.epochs) for n in names}

    home = opts.work / "home"
    shutil.rmtree(home, ignore_errors=True)
    store = Store(home)
    token = store.add_user(USER)
    from xsharp.algos import Model

    ids = {n: register(store, Model.load(f).spec or {"name": n}, f) for n, f in files.items()}
    tmp = opts.work / "wrk"
    tmp.mkdir(exist_ok=True)

    port = opts.port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(opts.work / "server.log", "ab")
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(home), str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    print(f"server: uvicorn on create_app(Store) at {url}, its own process, no scheduler or Ray (lighter than `xsharp server`)", flush=True)
    results = []
    try:
        deadline = time.time() + 60
        while not up(url):
            if server.poll() is not None or time.time() > deadline:
                sys.exit(f"the server did not start; see {opts.work / 'server.log'}")
            time.sleep(0.2)
        for n in names:
            results.append(bench_model(n, files[n], ids[n], url, token, opts, tmp))
        get_lua = tmp / "get.lua"
        get_lua.write_text(GET_LUA.format(token=token))
        print(f"\n== the service without a model, for context: where the time of a request goes  ({load()})", flush=True)
        for label, path in [("GET /healthz (no auth)", "/healthz"), (f"GET /v1/models/{ids[names[0]]} (auth + store)", f"/v1/models/{ids[names[0]]}")]:
            one, many = wrk(url + path, get_lua, 1, 1, opts.duration), wrk(url + path, get_lua, 2, 16, opts.duration)
            print(f"{label}: 1 client p50 {one['p50']:.2f} ms, p99 {one['p99']:.2f} ms; 16 clients {many['rps']:,.0f} req/s", flush=True)
    finally:
        server.terminate()
        server.wait()
    if opts.serve_replicas:
        print(f"\n== {names[0]} on Ray Serve (`xsharp serve`, embedded Ray), the same requests  ({load()})", flush=True)
        bench_ray_serve(ids[names[0]], home, results[0]["lua"], opts.serve_replicas, opts.duration, opts.work)

    print(f"\n{os.cpu_count()} cores, {load()} after; busiest processes: {busiest()}")
    print("uvicorn with " + ", ".join(f"{m} {'yes' if importlib.util.find_spec(m) else 'no'}" for m in ("uvloop", "httptools")) + " (used when present)")
    print(
        "\n| model | HTTP p50 / p99 ms (1 client) | ORT p50 / p99 ms | xsharp in-process p50 / p99 ms | HTTP req/s (16 clients) "
        "| ORT rows/s (16 threads x 1 row) | HTTP / ORT | ORT rows/s (batch 16) | xsharp in-process rows/s (batch 16) | goal p99 <= 20 ms | goal >= 0.50x ORT |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")  # rows/s with 16 rows a request: printed per model above
    for r in results:
        ratio = r["http_rps"] / r["ort_rps"]
        print(
            f"| {r['model']} | {r['http_p50']:.2f} / {r['http_p99']:.2f} | {r['ort_p50']:.3f} / {r['ort_p99']:.3f} "
            f"| {r['xs_p50']:.3f} / {r['xs_p99']:.3f} | {r['http_rps']:,.0f} | {r['ort_rps']:,.0f} | {ratio:.2f}x | {r['ort_b16']:,.0f} | {r['xs_b16']:,.0f} "
            f"| {r['http_p99']:.1f} ms ({'met' if r['http_p99'] <= 20 else 'not met'}) | {ratio:.2f}x ({'met' if ratio >= 0.5 else 'not met'}) |"
        )


if __name__ == "__main__":
    main()
