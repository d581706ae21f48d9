"""The import worker: runs the service's dataset imports in background threads, taken from the store's queue."""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Literal

from fastapi import Request
from pydantic import Field

from xsharp.algos.modules.base import SpecModel
from xsharp.cluster.policy import Policy
from xsharp.cluster.store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Import, Store
from xsharp.data.catalog import NAME, Catalog
from xsharp.data.importer import ImportOptions, import_dataset
from xsharp.fileguard import DataError

from .access import catalog_for

log = logging.getLogger("xsharp.api.datasets")  # the logger name the service has always logged imports under

PROGRESS_EVERY = 0.5  # seconds between progress writes to the store


class ImportRequest(SpecModel):
    """What to import, and how. The path lies under one of the server's data roots."""

    name: str = Field(pattern=f"^{NAME}$", description="the dataset's name (a new version if it exists)")
    path: str = Field(min_length=1, max_length=4096, description="a folder or file on the server, under a data root")
    format: str | None = Field(None, max_length=32, description="images | audio | table | text, or a file format; default: from the path")
    size: list[Annotated[int, Field(ge=1, le=2048)]] | None = Field(None, min_length=2, max_length=2, description="images: [height, width]")
    resize: Literal["squash", "crop", "fill"] = Field("squash", description="images: how a picture of another shape is made the size")
    channels: Literal[1, 3] = Field(3, description="images: 1 (grey) or 3 (colour)")
    sample_rate: int | None = Field(None, ge=1000, le=384_000, description="audio: resample every file to this rate")
    duration: float | None = Field(None, gt=0, le=3600, description="audio: cut or zero-pad every file to this many seconds")
    label_column: str | None = Field(None, min_length=1, max_length=256, description="tables, text: the label column")
    text_column: str | None = Field(None, min_length=1, max_length=256, description="text: the text column")
    feature_columns: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, min_length=1, max_length=4096, description="tables: the columns to keep (default: all but the label)"
    )
    shard_mb: float = Field(16.0, ge=0.0625, le=256, description="the target size of a shard in MiB")
    skip_bad: bool = Field(False, description="skip files that cannot be read (else the import fails naming the first)")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="share held out for test when the source has no test split")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="share of the training rows held out for validation")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="the seed of the split")

    def options(self) -> ImportOptions:
        fields = self.model_dump(exclude={"name", "path"})
        if fields["size"] is not None:
            fields["size"] = tuple(fields["size"])
        return ImportOptions(**fields)


class _ShuttingDown(BaseException):
    """Raised from an import's progress callback when the server stops: the import ends there."""


class _Cancelled(BaseException):
    """Raised from an import's progress callback when its owner or an admin cancelled it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ImportWorker:
    """Runs the service's imports, ``workers`` at a time, in this process's threads (the importer
    fans out on Ray tasks). Imports are kept in the store, which hands the next one out fairly
    (:meth:`Store.claim_import`: the oldest of the user who started the fewest lately); one left
    QUEUED or RUNNING by a server that died becomes FAILED when the next one starts
    (:meth:`recover`, which also sweeps the staging folders of the imports it cut short)."""

    POLL = 5.0  # seconds a worker thread sleeps between looks at the store when nothing wakes it

    def __init__(self, store: Store, policy: Policy, workers: int = 1):
        self.store, self.policy, self.workers = store, policy, max(1, workers)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending = 0  # submits not yet looked for by a thread
        self._closing = threading.Event()
        self._cancels: dict[int, str] = {}  # RUNNING import id -> its cancellation message

    @property
    def catalog(self) -> Catalog:
        return catalog_for(self.policy, self.store)

    def recover(self) -> list[int]:
        """At server start (no import is alive): imports left QUEUED or RUNNING fail, and every
        staging folder in the catalog (what imports killed mid-way left) is removed."""
        failed = self.store.recover_imports()
        try:
            swept = self.catalog.sweep_staging()
            if swept:
                log.info("removed %d staging folder(s) left by imports cut short", swept)
        except OSError:
            log.exception("sweeping the catalog's staging folders")
        return failed

    def _ensure_threads(self) -> None:
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("the import worker is closed")
            while len(self._threads) < self.workers:
                t = threading.Thread(target=self._loop, name=f"xsharp-import-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def submit(self, rec: Import) -> None:
        """An import was queued in the store: wake a thread to look (the store picks which runs next)."""
        self._ensure_threads()
        with self._wake:
            self._pending += 1
            self._wake.notify()

    def cancel(self, import_id: int, by: str) -> Import | None:
        """Cancel an import: a QUEUED one at once, a RUNNING one at its next progress report.
        The import's record as it is now (None: gone)."""
        message = f"cancelled by {by}"
        if self.store.move_import(import_id, [QUEUED], CANCELLED, message=message, finished=time.time()):
            return self.store.get_import(import_id)
        with self._lock:
            rec = self.store.get_import(import_id)
            if rec is not None and rec.state == RUNNING:
                self._cancels[import_id] = message
        return rec

    def _cancelled(self, import_id: int) -> str | None:
        with self._lock:
            return self._cancels.get(import_id)

    def close(self, timeout: float = 10.0) -> None:
        """Stop: running imports end at their next progress report, queued ones never start; each is FAILED saying so."""
        self._closing.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.time() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.time()))
        for rec in self.store.imports(states=[QUEUED, RUNNING], limit=1_000_000):
            self.store.move_import(rec.id, [QUEUED, RUNNING], FAILED, message="the server shut down during the import; import again", finished=time.time())

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                rec = self.store.claim_import()
            except Exception:  # noqa: BLE001 - a busy or broken store: look again later
                log.exception("taking the next import")
                rec = None
            if rec is None:
                with self._wake:
                    if self._pending == 0 and not self._closing.is_set():
                        self._wake.wait(self.POLL)
                    self._pending = 0
                continue
            try:
                self._execute(rec)
            except Exception:  # noqa: BLE001 - the record says FAILED; the worker goes on
                log.exception("import %s", rec.id)

    def _execute(self, rec: Import) -> None:
        """Run an import this thread made RUNNING to its end."""
        import_id = rec.id
        last = [0.0]

        def progress(p) -> None:
            if self._closing.is_set():
                raise _ShuttingDown
            cancelled = self._cancelled(import_id)
            if cancelled is not None:
                raise _Cancelled(cancelled)
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY or p.done >= p.total:
                last[0] = now
                self.store.import_progress(import_id, int(p.done), int(p.total), str(p.unit)[:32])

        def end(state: str, **fields) -> None:
            self.store.move_import(import_id, [RUNNING], state, finished=time.time(), **fields)

        try:
            cancelled = self._cancelled(import_id)  # cancelled between being taken and starting
            if cancelled is not None:
                raise _Cancelled(cancelled)
            request = ImportRequest.model_validate(rec.request)
            manifest = import_dataset(request.path, request.name, rec.user, self.catalog, request.options(), guard=self.policy.guard(), progress=progress)
        except _ShuttingDown:
            end(FAILED, message="the server shut down during the import; import again")
            return
        except _Cancelled as c:
            end(CANCELLED, message=c.message)
            return
        except DataError as e:
            end(FAILED, message=str(e))
            return
        except MemoryError:
            end(FAILED, message="MemoryError: the import ran out of memory")
            return
        except Exception as e:  # noqa: BLE001 - its text could quote the data: only its type is shown
            log.exception("import %s (%s/%s) failed", import_id, rec.user, rec.name)
            end(FAILED, message=f"{type(e).__name__} in the import (the server's log has the details)")
            return
        else:
            end(DONE, ref=manifest.ref)
        finally:  # after its end: a cancel that saw it RUNNING has left its mark by now
            with self._lock:
                self._cancels.pop(import_id, None)


def get_imports(request: Request) -> ImportWorker:
    worker = getattr(request.app.state, "imports", None)
    if worker is None:
        worker = request.app.state.imports = ImportWorker(request.app.state.store, request.app.state.policy)
    return worker
