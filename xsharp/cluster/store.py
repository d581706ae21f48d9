"""Durable job state: users and tokens, jobs and their transitions, events, metric series.

SQLite in WAL mode under ``$XSHARP_HOME`` (default ``~/.xsharp``). Every transition is one
transaction that checks the state it leaves, so two actors (the API and the scheduler) can
never both move a job, and a process killed at any moment leaves each job in a state it was
really in. Each job also has a folder for its log, checkpoints and artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .usage import HALF_LIFE, Usage

QUEUED, RUNNING, PAUSED, PREEMPTED = "QUEUED", "RUNNING", "PAUSED", "PREEMPTED"
SUCCEEDED, FAILED, STOPPED = "SUCCEEDED", "FAILED", "STOPPED"
STATES = (QUEUED, RUNNING, PAUSED, PREEMPTED, SUCCEEDED, FAILED, STOPPED)
DONE = "DONE"  # an import's end besides FAILED (imports are QUEUED, RUNNING, then DONE, FAILED or CANCELLED)
CANCELLED = "CANCELLED"  # an import its owner or an admin cancelled (DELETE /v1/datasets/imports/{id})
IMPORT_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
PENDING_IMPORTS = (QUEUED, RUNNING)
FAIR_SHARE_SECONDS = 3600  # the queue of imports favours the user who started the fewest in this long
WAITING = (QUEUED, PREEMPTED)  # in the queue, to be scheduled
FINISHED = (SUCCEEDED, FAILED, STOPPED)

HOME_ENV = "XSHARP_HOME"

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, admin INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, priority INTEGER NOT NULL,
    cpus REAL NOT NULL, gpus REAL NOT NULL,
    state TEXT NOT NULL, request TEXT,          -- request: pause | stop | preempt | yield, pending on a running job
    submitted REAL NOT NULL, queued_at REAL NOT NULL, started REAL, run_started REAL, finished REAL,
    runs INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    progress TEXT, result TEXT, error TEXT,
    pids TEXT);                                 -- the job's processes while it runs (for GPU attribution)
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, ts REAL NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id);
CREATE TABLE IF NOT EXISTS metrics (
    job_id INTEGER NOT NULL, ts REAL NOT NULL, phase TEXT NOT NULL, layer INTEGER, epoch INTEGER,
    step INTEGER, loss REAL, val_accuracy REAL, samples_per_second REAL);
CREATE INDEX IF NOT EXISTS metrics_job ON metrics(job_id);
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, name TEXT NOT NULL, request TEXT NOT NULL,   -- request: the POST /v1/datasets body, as JSON
    state TEXT NOT NULL,                        -- QUEUED | RUNNING | DONE | FAILED | CANCELLED
    done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, unit TEXT NOT NULL DEFAULT '',
    message TEXT, ref TEXT,                     -- ref: owner/name@version, once DONE
    created REAL NOT NULL, started REAL, finished REAL);
CREATE INDEX IF NOT EXISTS imports_user ON imports(user);
CREATE INDEX IF NOT EXISTS imports_state ON imports(state);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    job_id INTEGER NOT NULL, path TEXT NOT NULL, -- path: the model file, relative to the job's folder
    dataset TEXT, dataset_version TEXT, data_path TEXT,
    spec TEXT NOT NULL, metrics TEXT,           -- the job's spec (as stored) and result, as JSON
    created REAL NOT NULL, deleted REAL);       -- deleted: a tombstone, so a backfill never brings it back
CREATE UNIQUE INDEX IF NOT EXISTS models_job ON models(job_id);
CREATE TABLE IF NOT EXISTS usage (                -- each user's decayed resource-seconds (cluster/usage.py), as of as_of
    user TEXT PRIMARY KEY, cpu_seconds REAL NOT NULL, gpu_seconds REAL NOT NULL, as_of REAL NOT NULL);
CREATE INDEX IF NOT EXISTS models_user_name ON models(user, name);
"""

MODEL_FILES = ("artifacts/model.npz", "artifacts/best/model.npz")  # a plain job's model; a search's best trial's


_PHASE_ORDER = {"pretrain": 0, "finetune": 1, "search": 2}


def metric_position(row: dict) -> tuple:
    """Where in a job's training a metric row was taken: phases in order (pretrained layers
    first), then the step within the phase. A run's rows only ever move forward."""
    return (_PHASE_ORDER.get(row.get("phase"), 3), row.get("layer") or 0, row.get("step") or 0)


class TransitionError(RuntimeError):
    """The job is not in a state that allows this."""


def home(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get(HOME_ENV) or Path.home() / ".xsharp").expanduser()


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class User:
    name: str
    admin: bool


@dataclass
class Job:
    id: int
    user: str
    name: str
    spec: dict
    priority: int
    cpus: float
    gpus: float
    state: str
    request: str | None
    submitted: float
    queued_at: float
    started: float | None
    run_started: float | None
    finished: float | None
    runs: int
    failures: int
    progress: dict | None
    result: dict | None
    error: str | None
    pids: list[int] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        d = dict(row)
        for key in ("spec", "progress", "result", "pids"):
            d[key] = json.loads(d[key]) if d[key] else (None if key != "spec" else {})
        return cls(**d)

    def public(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("spec", "pids")}
        d["resources"] = self.spec.get("resources", {})
        d["mode"] = self.spec.get("mode", "local")
        return d


@dataclass
class Import:
    """One dataset import through the service (``POST /v1/datasets``)."""

    id: int
    user: str
    name: str
    request: dict
    state: str
    done: int
    total: int
    unit: str
    message: str | None
    ref: str | None
    created: float
    started: float | None
    finished: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Import":
        d = dict(row)
        d["request"] = json.loads(d["request"]) if d["request"] else {}
        return cls(**d)

    def public(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RegisteredModel:
    """One model version in the registry, with its lineage: the job that trained it, on what."""

    id: int
    user: str
    name: str
    version: int
    job_id: int
    path: str
    dataset: str | None
    dataset_version: str | None
    data_path: str | None
    spec: dict
    metrics: dict | None
    created: float
    deleted: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RegisteredModel":
        d = dict(row)
        d["spec"] = json.loads(d["spec"]) if d["spec"] else {}
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else None
        return cls(**d)

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "deleted"}


class Store:
    def __init__(self, root: str | Path | None = None):
        self.root = home(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.usage_half_life = HALF_LIFE  # the server's --usage-half-life
        self.db.executescript(SCHEMA)  # idempotent; executescript manages its own transaction

    # ------------------------------------------------------------------ connection
    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.root / "xsharp.db", timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    class _Tx:
        def __init__(self, db, lock):
            self.db, self.lock = db, lock

        def __enter__(self):
            self.lock.acquire()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.lock.release()
                raise
            return self.db

        def __exit__(self, exc_type, *_):
            try:
                self.db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.lock.release()

    def tx(self) -> "_Tx":
        """A write transaction. Writers of this process queue on a lock rather than in SQLite's
        busy handler, whose sleeps put a one-second tail on latency under concurrent writes."""
        return self._Tx(self.db, self._write_lock)

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(int(job_id))

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, admin: bool = False) -> str:
        """Create a user (or keep an existing one) and return a new token for them."""
        with self.tx() as db:
            db.execute("INSERT OR IGNORE INTO users(name, admin, created) VALUES (?, ?, ?)", (name, int(admin), time.time()))
            if admin:
                db.execute("UPDATE users SET admin = 1 WHERE name = ?", (name,))
        return self.issue_token(name)

    def issue_token(self, user: str, label: str = "") -> str:
        token = "xs_" + secrets.token_urlsafe(32)
        with self.tx() as db:
            db.execute("INSERT INTO tokens(hash, user, label, created) VALUES (?, ?, ?, ?)", (hash_token(token), user, label, time.time()))
        return token

    def user_for_token(self, token: str) -> User | None:
        row = self.db.execute(
            "SELECT u.name, u.admin FROM tokens t JOIN users u ON u.name = t.user WHERE t.hash = ?", (hash_token(token),)
        ).fetchone()
        return User(row["name"], bool(row["admin"])) if row else None

    def users(self) -> list[User]:
        return [User(r["name"], bool(r["admin"])) for r in self.db.execute("SELECT name, admin FROM users ORDER BY name")]

    # ------------------------------------------------------------------ jobs
    def submit(self, user: str, spec: dict, priority: int, cpus: float, gpus: float) -> Job:
        now = time.time()
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO jobs(user, name, spec, priority, cpus, gpus, state, submitted, queued_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (user, spec.get("name", "job"), json.dumps(spec), priority, cpus, gpus, QUEUED, now, now),
            )
            job_id = cur.lastrowid
            self._event(db, job_id, "submitted", f"submitted by {user} (priority {priority})")
        return self.get(job_id)

    def get(self, job_id: int) -> Job | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    @staticmethod
    def _select(table: str, user: str | None, states: Iterable[str] | None) -> tuple[str, list]:
        """``SELECT * FROM table`` for one user's rows in some states (each filter optional)."""
        sql, args = f"SELECT * FROM {table} WHERE 1=1", []
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        if states:
            states = list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        return sql, args

    def jobs(self, user: str | None = None, states: Iterable[str] | None = None, limit: int = 1000, offset: int = 0) -> list[Job]:
        sql, args = self._select("jobs", user, states)
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        args += [limit, offset]
        return [Job.from_row(r) for r in self.db.execute(sql, args)]

    def transition(self, job_id: int, from_states: Iterable[str], to_state: str, message: str, **fields: Any) -> Job:
        """Move a job from one of ``from_states`` to ``to_state`` (and set ``fields``) atomically."""
        from_states = list(from_states)
        sets = {"state": to_state, **fields}
        for key in ("progress", "result"):
            if key in sets and sets[key] is not None and not isinstance(sets[key], str):
                sets[key] = json.dumps(sets[key])
        assign = ", ".join(f"{k} = ?" for k in sets)
        with self.tx() as db:
            was = db.execute("SELECT state, user, cpus, gpus, run_started FROM jobs WHERE id = ?", (job_id,)).fetchone() if RUNNING in from_states else None
            cur = db.execute(
                f"UPDATE jobs SET {assign} WHERE id = ? AND state IN ({','.join('?' * len(from_states))})",
                [*sets.values(), job_id, *from_states],
            )
            if cur.rowcount != 1:
                row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    raise KeyError(job_id)
                raise TransitionError(f"job {job_id} is {row['state']}; cannot go to {to_state}")
            self._event(db, job_id, to_state.lower(), message)
            if was is not None and was["state"] == RUNNING and to_state != RUNNING and was["run_started"] is not None:
                self._charge(db, was["user"], was["cpus"], was["gpus"], was["run_started"], time.time())
            if to_state == SUCCEEDED:  # the registration commits with the transition, or neither does
                self._register(db, job_id)
        return self.get(job_id)

    # ------------------------------------------------------------------ usage, for fair share
    def _charge(self, db: sqlite3.Connection, user: str, cpus: float, gpus: float, start: float, end: float) -> None:
        """Add a run that held ``cpus`` and ``gpus`` from ``start`` to ``end`` to ``user``'s usage (in the caller's transaction)."""
        row = db.execute("SELECT cpu_seconds, gpu_seconds, as_of FROM usage WHERE user = ?", (user,)).fetchone()
        before = Usage(row["cpu_seconds"], row["gpu_seconds"], row["as_of"]) if row else Usage(as_of=start)
        after = before.plus_hold(cpus, gpus, start, end, self.usage_half_life)
        db.execute(
            "INSERT INTO usage(user, cpu_seconds, gpu_seconds, as_of) VALUES (?,?,?,?) "
            "ON CONFLICT(user) DO UPDATE SET cpu_seconds = excluded.cpu_seconds, gpu_seconds = excluded.gpu_seconds, as_of = excluded.as_of",
            (user, after.cpu_seconds, after.gpu_seconds, after.as_of),
        )

    def usage(self, now: float) -> dict[str, Usage]:
        """Every user's decayed usage of finished runs, as of ``now`` (runs going on are not in it yet)."""
        return {r["user"]: Usage(r["cpu_seconds"], r["gpu_seconds"], r["as_of"]).at(now, self.usage_half_life)
                for r in self.db.execute("SELECT user, cpu_seconds, gpu_seconds, as_of FROM usage")}

    def usage_with_running(self, now: float) -> dict[str, Usage]:
        """``usage(now)`` with the runs going on added as if they ended ``now``."""
        usage = self.usage(now)
        for j in self.jobs(states=[RUNNING], limit=1_000_000):
            if j.run_started is not None:
                usage[j.user] = usage.get(j.user, Usage(as_of=now)).plus_hold(j.cpus, j.gpus, j.run_started, now, self.usage_half_life)
        return usage

    def set_request(self, job_id: int, request: str | None, only_states: Iterable[str] = (RUNNING,)) -> bool:
        only = list(only_states)
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET request = ? WHERE id = ? AND state IN ({','.join('?' * len(only))})", (request, job_id, *only)
            )
            if cur.rowcount and request:
                self._event(db, job_id, "request", f"{request} requested")
            return cur.rowcount == 1

    def update_progress(self, job_id: int, progress: dict) -> None:
        with self.tx() as db:
            db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def delete(self, job_id: int) -> None:
        with self.tx() as db:
            cur = db.execute(f"DELETE FROM jobs WHERE id = ? AND state IN ({','.join('?' * len(FINISHED))})", (job_id, *FINISHED))
            if cur.rowcount != 1:
                job = self.get(job_id)
                if job is None:
                    raise KeyError(job_id)
                raise TransitionError(f"job {job_id} is {job.state}; stop it before deleting")
            db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM metrics WHERE job_id = ?", (job_id,))
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    # ------------------------------------------------------------------ events, logs, metrics
    def _event(self, db: sqlite3.Connection, job_id: int, kind: str, message: str) -> None:
        now = time.time()
        db.execute("INSERT INTO events(job_id, ts, kind, message) VALUES (?, ?, ?, ?)", (job_id, now, kind, message))
        self.log(job_id, f"[{kind}] {message}", now)

    def event(self, job_id: int, kind: str, message: str) -> None:
        with self.tx() as db:
            self._event(db, job_id, kind, message)

    def events(self, job_id: int, after: int = 0) -> list[dict]:
        rows = self.db.execute("SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id", (job_id, after))
        return [dict(r) for r in rows]

    def log(self, job_id: int, line: str, ts: float | None = None) -> None:
        path = self.job_dir(job_id) / "job.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts or time.time()))
        with open(path, "a") as f:
            f.write(f"{stamp} {line}\n")

    def add_metrics(self, job_id: int, rows: list[dict]) -> int:
        """Append the rows that lie past the job's last one (see :func:`metric_position`); a run
        resumed from a checkpoint reports again the steps its lost run had reported, and those
        repeats are dropped. Returns how many rows were added."""
        if not rows:
            return 0
        cols = ("phase", "layer", "epoch", "step", "loss", "val_accuracy", "samples_per_second")
        with self.tx() as db:
            last = db.execute("SELECT phase, layer, step FROM metrics WHERE job_id = ? ORDER BY rowid DESC LIMIT 1", (job_id,)).fetchone()
            mark = metric_position(dict(last)) if last else None
            fresh = []
            for r in rows:
                position = metric_position(r)
                if mark is None or position > mark:
                    fresh.append(r)
                    mark = position
            rows = fresh
            db.executemany(
                f"INSERT INTO metrics(job_id, ts, {', '.join(cols)}) VALUES (?, ?, {', '.join('?' * len(cols))})",
                [(job_id, r.get("ts", time.time()), *(r.get(c) for c in cols)) for r in rows],
            )
        return len(rows)

    def metrics(self, job_id: int, after: int = 0) -> list[dict]:
        """The job's metric rows in the order written; ``after``: skip that many (rows are only ever appended)."""
        rows = self.db.execute("SELECT * FROM metrics WHERE job_id = ? ORDER BY rowid LIMIT -1 OFFSET ?", (job_id, after))
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ dataset imports (QUEUED -> RUNNING -> DONE | FAILED | CANCELLED)
    def add_import(self, user: str, name: str, request: dict) -> Import:
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO imports(user, name, request, state, created) VALUES (?, ?, ?, ?, ?)", (user, name, json.dumps(request), QUEUED, time.time())
            )
            import_id = cur.lastrowid
        return self.get_import(import_id)

    def add_import_capped(self, user: str, name: str, request: dict, cap: int) -> Import | None:
        """Queue an import unless ``user`` already has ``cap`` QUEUED or RUNNING: the count and the
        insert are one transaction, so parallel requests never get past the cap. None at the cap."""
        with self.tx() as db:
            pending = db.execute(
                "SELECT COUNT(*) AS n FROM imports WHERE user = ? AND state IN (?, ?)", (user, *PENDING_IMPORTS)
            ).fetchone()["n"]
            if pending >= cap:
                return None
            cur = db.execute(
                "INSERT INTO imports(user, name, request, state, created) VALUES (?, ?, ?, ?, ?)", (user, name, json.dumps(request), QUEUED, time.time())
            )
            import_id = cur.lastrowid
        return self.get_import(import_id)

    def claim_import(self, window: float = FAIR_SHARE_SECONDS) -> Import | None:
        """Take the next QUEUED import and make it RUNNING, fairly: the oldest of the user who
        started the fewest imports in the last ``window`` seconds (a RUNNING one counts), so one
        user's long queue does not hold up another's import. None when none is queued."""
        now = time.time()
        with self.tx() as db:
            row = db.execute(
                """SELECT i.id FROM imports i WHERE i.state = ?
                   ORDER BY (SELECT COUNT(*) FROM imports j WHERE j.user = i.user AND j.started IS NOT NULL AND j.started >= ?), i.id
                   LIMIT 1""",
                (QUEUED, now - window),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE imports SET state = ?, started = ? WHERE id = ? AND state = ?", (RUNNING, now, row["id"], QUEUED))
        return self.get_import(row["id"])

    def get_import(self, import_id: int) -> Import | None:
        row = self.db.execute("SELECT * FROM imports WHERE id = ?", (import_id,)).fetchone()
        return Import.from_row(row) if row else None

    def imports(self, user: str | None = None, states: Iterable[str] | None = None, limit: int = 100) -> list[Import]:
        """The newest first."""
        sql, args = self._select("imports", user, states)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [Import.from_row(r) for r in self.db.execute(sql, args)]

    def move_import(self, import_id: int, from_states: Iterable[str], to_state: str, **fields: Any) -> bool:
        """Move an import from one of ``from_states`` to ``to_state`` (and set ``fields``); False if it was in none."""
        from_states = list(from_states)
        sets = {"state": to_state, **fields}
        with self.tx() as db:
            cur = db.execute(
                f"UPDATE imports SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ? AND state IN ({','.join('?' * len(from_states))})",
                [*sets.values(), import_id, *from_states],
            )
            return cur.rowcount == 1

    def import_progress(self, import_id: int, done: int, total: int, unit: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE imports SET done = ?, total = ?, unit = ? WHERE id = ? AND state = ?", (done, total, unit, import_id, RUNNING))

    def recover_imports(self, message: str = "the server restarted during the import; nothing of it was kept, import again") -> list[int]:
        """After a restart no import of ours is alive: those left QUEUED or RUNNING failed."""
        with self.tx() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM imports WHERE state IN (?, ?)", (QUEUED, RUNNING))]
            db.execute("UPDATE imports SET state = ?, message = ?, finished = ? WHERE state IN (?, ?)", (FAILED, message, time.time(), QUEUED, RUNNING))
        return ids

    # ------------------------------------------------------------------ the model registry
    def _model_file(self, job_id: int) -> str | None:
        for rel in MODEL_FILES:
            if (self.job_dir(job_id) / rel).is_file():
                return rel
        return None

    def _register(self, db: sqlite3.Connection, job_id: int) -> int | None:
        """Register the model of SUCCEEDED job ``job_id`` inside the caller's transaction: the next
        version of (user, spec name). None when the job left no model file (a search with no
        finished trial) or it is registered already (a tombstone counts)."""
        rel = self._model_file(job_id)
        if rel is None or db.execute("SELECT 1 FROM models WHERE job_id = ?", (job_id,)).fetchone():
            return None
        job = Job.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        version = db.execute("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM models WHERE user = ? AND name = ?", (job.user, job.name)).fetchone()["v"]
        data = job.spec.get("data") or {}
        dataset, data_path = data.get("dataset"), data.get("path")
        dataset_version = None
        if isinstance(dataset, str) and "@" in dataset:  # a catalog dataset, pinned at submit: OWNER/NAME@VERSION
            dataset, dataset_version = dataset.rsplit("@", 1)
        data_path = str(data_path) if data_path else None
        cur = db.execute(
            "INSERT INTO models(user, name, version, job_id, path, dataset, dataset_version, data_path, spec, metrics, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (job.user, job.name, version, job_id, rel, dataset, dataset_version, data_path, json.dumps(job.spec),
             json.dumps(job.result) if job.result is not None else None, job.finished or time.time()),
        )
        self._event(db, job_id, "registered", f"model {cur.lastrowid}: {job.name} version {version}")
        return cur.lastrowid

    def backfill_models(self) -> list[int]:
        """Register every SUCCEEDED job's model that has no registry row (a store from before the
        registry); returns the new models' ids."""
        new = []
        with self.tx() as db:
            for row in db.execute(
                "SELECT id FROM jobs WHERE state = ? AND id NOT IN (SELECT job_id FROM models) ORDER BY id", (SUCCEEDED,)
            ).fetchall():
                model_id = self._register(db, row["id"])
                if model_id is not None:
                    new.append(model_id)
        return new

    def model(self, model_id: int) -> RegisteredModel | None:
        row = self.db.execute("SELECT * FROM models WHERE id = ? AND deleted IS NULL", (model_id,)).fetchone()
        return RegisteredModel.from_row(row) if row else None

    def models(self, user: str | None = None, name: str | None = None, limit: int = 1000, offset: int = 0) -> list[RegisteredModel]:
        sql, args = "SELECT * FROM models WHERE deleted IS NULL", []
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        return [RegisteredModel.from_row(r) for r in self.db.execute(sql, [*args, limit, offset])]

    def delete_model(self, model_id: int) -> bool:
        """Take a model out of the registry (its job's artifacts stay). False if there was none."""
        with self.tx() as db:
            cur = db.execute("UPDATE models SET deleted = ? WHERE id = ? AND deleted IS NULL", (time.time(), model_id))
            return cur.rowcount == 1

    # ------------------------------------------------------------------ recovery and the read side
    def recover(self) -> list[int]:
        """After a restart no worker of ours is alive: RUNNING jobs go back to the queue. Any
        SUCCEEDED job's model missing from the registry is registered."""
        self.backfill_models()
        ids = [j.id for j in self.jobs(states=[RUNNING])]
        for job_id in ids:
            self.transition(job_id, [RUNNING], QUEUED, "server restarted; will resume from the last checkpoint", request=None)
        return ids

    def jobs_by_state(self) -> dict[str, int]:
        counts = {s: 0 for s in STATES}
        for row in self.db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[row["state"]] = row["n"]
        return counts

    def set_pids(self, job_id: int, pids: list[int]) -> None:
        with self.tx() as db:
            db.execute("UPDATE jobs SET pids = ? WHERE id = ?", (json.dumps(sorted(set(pids))), job_id))

    def running_jobs(self) -> list[dict]:
        """RUNNING jobs as the exporter's JobView reads them: owner, processes, latest progress."""
        out = []
        for job in self.jobs(states=[RUNNING], limit=1_000_000):
            p = job.progress or {}
            out.append({"job_id": job.id, "user": job.user, "pids": job.pids or [], "gpus": [], "samples_per_second": p.get("samples_per_second"),
                        "loss": p.get("loss"), "step": p.get("step"), "failures": job.failures})
        return out

    def queue_wait_seconds(self) -> list[float]:
        now = time.time()
        return [now - r["queued_at"] for r in self.db.execute("SELECT queued_at FROM jobs WHERE state IN (?, ?)", WAITING)]


def job_view() -> Store:
    """The store as the exporter's JobView: `xsharp exporter --jobs xsharp.cluster.store:job_view`."""
    return Store()
