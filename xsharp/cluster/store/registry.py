"""The model registry: a version per SUCCEEDED job's model, with its lineage."""

from __future__ import annotations

import json
import sqlite3
import time

from .database import Database
from .records import Job, RegisteredModel
from .states import SUCCEEDED

MODEL_FILES = ("artifacts/model.npz", "artifacts/best/model.npz")  # a plain job's model; a search's best trial's


class ModelRegistry(Database):
    """The models table; a job's model is registered in the transaction that makes it SUCCEEDED."""

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
            (
                job.user,
                job.name,
                version,
                job_id,
                rel,
                dataset,
                dataset_version,
                data_path,
                json.dumps(job.spec),
                json.dumps(job.result) if job.result is not None else None,
                job.finished or time.time(),
            ),
        )
        self._event(db, job_id, "registered", f"model {cur.lastrowid}: {job.name} version {version}")
        return cur.lastrowid

    def backfill_models(self) -> list[int]:
        """Register every SUCCEEDED job's model that has no registry row (a store from before the
        registry); returns the new models' ids."""
        new = []
        with self.tx() as db:
            for row in db.execute("SELECT id FROM jobs WHERE state = ? AND id NOT IN (SELECT job_id FROM models) ORDER BY id", (SUCCEEDED,)).fetchall():
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
