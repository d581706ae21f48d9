"""The store's rows as Python: users, jobs, imports, registered models."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass


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
    def from_row(cls, row: sqlite3.Row) -> Job:
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
    def from_row(cls, row: sqlite3.Row) -> Import:
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
    def from_row(cls, row: sqlite3.Row) -> RegisteredModel:
        d = dict(row)
        d["spec"] = json.loads(d["spec"]) if d["spec"] else {}
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else None
        return cls(**d)

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "deleted"}
