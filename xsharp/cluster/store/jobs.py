"""Jobs and their transitions, progress and metric series.

Every transition is one transaction that checks the state it leaves, so two actors (the API and
the scheduler) can never both move a job.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from typing import Any

from ..usage import Usage
from .records import Job
from .registry import ModelRegistry
from .states import FINISHED, QUEUED, RUNNING, STATES, SUCCEEDED, WAITING, TransitionError
from .usage_ledger import UsageLedger

_PHASE_ORDER = {"pretrain": 0, "finetune": 1, "search": 2}


def metric_position(row: dict) -> tuple:
    """Where in a job's training a metric row was taken: phases in order (pretrained layers
    first), then the step within the phase. A run's rows only ever move forward."""
    return (_PHASE_ORDER.get(row.get("phase"), 3), row.get("layer") or 0, row.get("step") or 0)


class JobTable(UsageLedger, ModelRegistry):
    """The jobs table, with the events and metric rows of each job; a run's end charges its
    owner's usage and a success registers its model, in the same transaction."""

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
            cur = db.execute(f"UPDATE jobs SET request = ? WHERE id = ? AND state IN ({','.join('?' * len(only))})", (request, job_id, *only))
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
            out.append(
                {
                    "job_id": job.id,
                    "user": job.user,
                    "pids": job.pids or [],
                    "gpus": [],
                    "samples_per_second": p.get("samples_per_second"),
                    "loss": p.get("loss"),
                    "step": p.get("step"),
                    "failures": job.failures,
                }
            )
        return out

    def queue_wait_seconds(self) -> list[float]:
        now = time.time()
        return [now - r["queued_at"] for r in self.db.execute("SELECT queued_at FROM jobs WHERE state IN (?, ?)", WAITING)]
