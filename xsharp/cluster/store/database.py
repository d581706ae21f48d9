"""The store's SQLite database: where it lives, its connections and write transactions."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..usage import HALF_LIFE
from .schema import SCHEMA

HOME_ENV = "XSHARP_HOME"


def home(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get(HOME_ENV) or Path.home() / ".xsharp").expanduser()


class Database:
    """The SQLite file under the store's root, a connection per thread, and the jobs' folders, logs
    and event rows that every table's writes may add to."""

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

    def tx(self) -> _Tx:
        """A write transaction. Writers of this process queue on a lock rather than in SQLite's
        busy handler, whose sleeps put a one-second tail on latency under concurrent writes."""
        return self._Tx(self.db, self._write_lock)

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(int(job_id))

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

    # ------------------------------------------------------------------ a job's events and log, which any table's write may add to
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
