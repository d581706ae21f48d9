"""Each user's decayed resource-seconds of finished runs, the fair share's input."""

from __future__ import annotations

import sqlite3

from ..usage import Usage
from .database import Database


class UsageLedger(Database):
    """The usage table: a run's hold is charged when the run ends (cluster/usage.py has the maths)."""

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
        return {
            r["user"]: Usage(r["cpu_seconds"], r["gpu_seconds"], r["as_of"]).at(now, self.usage_half_life)
            for r in self.db.execute("SELECT user, cpu_seconds, gpu_seconds, as_of FROM usage")
        }
