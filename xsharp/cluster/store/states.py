"""The states a job and a dataset import go through."""

from __future__ import annotations

QUEUED, RUNNING, PAUSED, PREEMPTED = "QUEUED", "RUNNING", "PAUSED", "PREEMPTED"
SUCCEEDED, FAILED, STOPPED = "SUCCEEDED", "FAILED", "STOPPED"
STATES = (QUEUED, RUNNING, PAUSED, PREEMPTED, SUCCEEDED, FAILED, STOPPED)
DONE = "DONE"  # an import's end besides FAILED (imports are QUEUED, RUNNING, then DONE, FAILED or CANCELLED)
CANCELLED = "CANCELLED"  # an import its owner or an admin cancelled (DELETE /v1/datasets/imports/{id})
IMPORT_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
PENDING_IMPORTS = (QUEUED, RUNNING)
WAITING = (QUEUED, PREEMPTED)  # in the queue, to be scheduled
FINISHED = (SUCCEEDED, FAILED, STOPPED)


class TransitionError(RuntimeError):
    """The job is not in a state that allows this."""
