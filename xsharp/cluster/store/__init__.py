"""Durable job state: users and tokens, jobs and their transitions, events, metric series.

SQLite in WAL mode under ``$XSHARP_HOME`` (default ``~/.xsharp``). Every transition is one
transaction that checks the state it leaves, so two actors (the API and the scheduler) can
never both move a job, and a process killed at any moment leaves each job in a state it was
really in. Each job also has a folder for its log, checkpoints and artifacts.
"""

from __future__ import annotations

from .database import HOME_ENV, home
from .imports import FAIR_SHARE_SECONDS, ImportQueue
from .jobs import JobTable, metric_position
from .records import Import, Job, RegisteredModel, User
from .registry import MODEL_FILES
from .schema import SCHEMA
from .states import (
    CANCELLED,
    DONE,
    FAILED,
    FINISHED,
    IMPORT_STATES,
    PAUSED,
    PENDING_IMPORTS,
    PREEMPTED,
    QUEUED,
    RUNNING,
    STATES,
    STOPPED,
    SUCCEEDED,
    WAITING,
    TransitionError,
)
from .users import UserTable, hash_token

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "FAIR_SHARE_SECONDS",
    "FINISHED",
    "HOME_ENV",
    "IMPORT_STATES",
    "MODEL_FILES",
    "PAUSED",
    "PENDING_IMPORTS",
    "PREEMPTED",
    "QUEUED",
    "RUNNING",
    "SCHEMA",
    "STATES",
    "STOPPED",
    "SUCCEEDED",
    "WAITING",
    "Import",
    "Job",
    "RegisteredModel",
    "Store",
    "TransitionError",
    "User",
    "hash_token",
    "home",
    "job_view",
    "metric_position",
]


class Store(UserTable, ImportQueue, JobTable):
    """The whole store: users, imports, jobs with their usage and registered models."""


def job_view() -> Store:
    """The store as the exporter's JobView: `xsharp exporter --jobs xsharp.cluster.store:job_view`."""
    return Store()
