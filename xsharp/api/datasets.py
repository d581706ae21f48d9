"""/v1/datasets: the service's dataset catalog (``<store>/datasets``) and imports into it.

A user imports a folder or file under one of the server's data roots (``POST /v1/datasets``);
the import runs in the background on the server (:class:`ImportWorker`, one or two at a time,
others queue, fairly between users) and its record says how far it got; its owner or an admin
cancels it (``DELETE /v1/datasets/imports/{id}``). Every user sees their own datasets, and the
ones an admin shared; an admin sees all. A dataset a caller may not see is a 404, the same as a
missing one: names tell nobody what others hold. Jobs name a dataset ``NAME`` (their own),
``OWNER/NAME`` (a shared one) or with ``@VERSION``; the job service pins the spec to the exact
``owner/name@version`` at submit (:func:`pin_dataset`).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from xsharp.algos.modules.base import SpecModel
from xsharp.cluster.policy import Policy
from xsharp.cluster.store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Import, Store, User
from xsharp.data.catalog import NAME, Catalog, DatasetRef
from xsharp.data import samples as sampling
from xsharp.data.manifest import Manifest
from xsharp.fileguard import DataError, Forbidden

from .auth import current_user, get_store

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

MAX_PENDING_IMPORTS = 8  # a user's imports QUEUED or RUNNING at once; more is 429
MAX_SAMPLES = sampling.MAX_SAMPLES
IMPORT_FORMATS = ("images", "audio", "table", "text")
PROGRESS_EVERY = 0.5  # seconds between progress writes to the store

Name = Annotated[str, PathParam(pattern=f"^{NAME}$", description="letters, digits, '.', '_' or '-', at most 64")]
ImportId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the import's id")]
Version = Query(None, ge=1, le=999_999_999, description="one version (default: every version)")


def get_policy(request: Request) -> Policy:
    return request.app.state.policy


def catalog_for(policy: Policy, store: Store) -> Catalog:
    return Catalog(policy.datasets_root or store.root / "datasets")


def get_catalog(request: Request) -> Catalog:
    return catalog_for(request.app.state.policy, request.app.state.store)


# --------------------------------------------------------------------------- who sees what
def may_see(manifest: Manifest, user: User) -> bool:
    return user.admin or manifest.owner == user.name or manifest.shared


def visible_versions(catalog: Catalog, owner: str, name: str, user: User) -> list[Manifest]:
    """The versions of ``owner/name`` that ``user`` may see; 404 when none (missing or not theirs: the same answer)."""
    found = [m for m in catalog.manifests_of(owner, name) if may_see(m, user)]
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {owner}/{name}")
    return found


def find_visible(catalog: Catalog, text: str, user: User, field: str = "data.dataset") -> Manifest:
    """The manifest a spec's ``NAME``, ``OWNER/NAME`` or ``...@VERSION`` names for ``user``: their
    own, or one an admin shared (an admin: any). DataError naming ``field`` otherwise, with the
    same words for a dataset that does not exist and one the user may not see."""
    ref = DatasetRef.parse(text, field)
    owner = ref.owner or user.name
    if not DatasetRef.looks_like(f"{owner}/{ref.name}"):  # a user name that cannot own datasets
        raise DataError(f"{field}: no dataset {text}")
    visible = [m for m in catalog.manifests_of(owner, ref.name) if may_see(m, user)]
    if not visible:
        raise DataError(f"{field}: no dataset {DatasetRef(ref.name, ref.owner)}")
    if ref.version is None:
        return visible[-1]
    for m in visible:
        if m.version == ref.version:
            return m
    raise DataError(f"{field}: {owner}/{ref.name} has no version {ref.version} (versions: {', '.join(str(m.version) for m in visible)})")


def pin_dataset(data: dict, user: User, policy: Policy) -> dict:
    """A spec's data section with a catalog dataset pinned to its ``owner/name@version`` (a bundled
    dataset, or a path, as it was). DataError when the user may not use the one it names."""
    from xsharp.algos.datasets import NAMED

    name = data.get("dataset")
    if not isinstance(name, str) or name in NAMED:
        return data
    if policy.datasets_root is None:  # a server without a catalog
        raise DataError(f"data.dataset: no dataset {name}")
    manifest = find_visible(Catalog(policy.datasets_root), name, user)
    return {**data, "dataset": manifest.ref}


# --------------------------------------------------------------------------- bodies and answers
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

    def options(self):
        from xsharp.data.importer import ImportOptions

        fields = self.model_dump(exclude={"name", "path"})
        if fields["size"] is not None:
            fields["size"] = tuple(fields["size"])
        return ImportOptions(**fields)


class ImportOut(BaseModel):
    id: int
    user: str
    name: str
    state: str  # QUEUED | RUNNING | DONE | FAILED | CANCELLED
    done: int
    total: int
    unit: str  # what done and total count: files, rows ...
    message: str | None = None  # why it failed, or who cancelled it
    ref: str | None = None  # owner/name@version, once DONE
    created: float
    started: float | None = None
    finished: float | None = None
    request: dict[str, Any]


class DatasetVersion(BaseModel):
    """A version's manifest summary (everything but its shard list)."""

    model_config = ConfigDict(extra="allow")
    name: str
    owner: str
    version: int
    ref: str
    kind: str
    classes: list[str]
    counts: dict[str, list[int]]
    rows: dict[str, int]
    shape: list[int]
    dtype: str
    shared: bool
    created: float
    bytes: int
    shard_count: int


class DatasetOut(BaseModel):
    owner: str
    name: str
    shared: bool  # every version is
    versions: list[DatasetVersion]


class Deleted(BaseModel):
    deleted: list[str]


class Sample(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    split: str
    label: int
    class_name: str = Field(alias="class")
    png_base64: str | None = None  # images: a PNG thumbnail
    value: Any = None  # other rows: the row as JSON, long strings and rows cut short


class SamplesOut(BaseModel):
    ref: str
    kind: str
    shape: list[int]
    samples: list[Sample]


def _import_out(rec: Import) -> ImportOut:
    return ImportOut(**rec.public())


def _version_out(m: Manifest) -> DatasetVersion:
    return DatasetVersion(**m.summary())


def _dataset_out(owner: str, name: str, versions: list[Manifest]) -> DatasetOut:
    return DatasetOut(owner=owner, name=name, shared=all(m.shared for m in versions), versions=[_version_out(m) for m in versions])


# --------------------------------------------------------------------------- the import worker
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
            from xsharp.data.importer import import_dataset

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


# --------------------------------------------------------------------------- routes
@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut, summary="Import a dataset from a path on the server")
def start_import(
    body: ImportRequest,
    user: User = Depends(current_user),
    store: Store = Depends(get_store),
    policy: Policy = Depends(get_policy),
    worker: ImportWorker = Depends(get_imports),
) -> ImportOut:
    """Queue an import of a folder or file under one of the server's data roots (403 otherwise);
    it runs in the background: poll `GET /v1/datasets/imports/{id}` until DONE (its `ref` names
    the new version) or FAILED (its `message` says why)."""
    if not DatasetRef.looks_like(f"{user.name}/{body.name}"):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"user {user.name!r}: a name that cannot own datasets (letters, digits, '.', '_' or '-')"])
    from xsharp.algos.datasets import FORMATS

    if body.format is not None and body.format not in IMPORT_FORMATS and body.format not in FORMATS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"format: unknown format; known: {', '.join([*IMPORT_FORMATS, *sorted(FORMATS)])}"])
    try:
        real = policy.guard().check(body.path, "path")
    except Forbidden as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, [str(e)]) from None
    except DataError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [str(e)]) from None
    rec = store.add_import_capped(user.name, body.name, body.model_dump() | {"path": str(real)}, MAX_PENDING_IMPORTS)
    if rec is None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, [f"you have {MAX_PENDING_IMPORTS} imports queued or running; wait for one to finish"])
    worker.submit(rec)
    return _import_out(rec)


@router.get("/imports", response_model=list[ImportOut], summary="Your imports, newest first")
def list_imports(limit: int = Query(50, ge=1, le=1000), user: User = Depends(current_user), store: Store = Depends(get_store)) -> list[ImportOut]:
    return [_import_out(r) for r in store.imports(user=user.name, limit=limit)]


@router.get("/imports/{import_id}", response_model=ImportOut, summary="One import: its state and progress")
def get_import(import_id: ImportId, user: User = Depends(current_user), store: Store = Depends(get_store)) -> ImportOut:
    rec = store.get_import(import_id)
    if rec is None or (rec.user != user.name and not user.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")
    return _import_out(rec)


@router.delete("/imports/{import_id}", response_model=ImportOut, summary="Cancel an import")
def cancel_import(import_id: ImportId, user: User = Depends(current_user), store: Store = Depends(get_store), worker: ImportWorker = Depends(get_imports)) -> ImportOut:
    """Its owner or an admin (404 for others, as for a missing import). A QUEUED import is
    CANCELLED at once; a RUNNING one stops at its next progress report (poll it until CANCELLED,
    or DONE if it finished first); a finished one is 409."""
    rec = store.get_import(import_id)
    if rec is None or (rec.user != user.name and not user.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import {import_id}")
    if rec.state not in (QUEUED, RUNNING):
        raise HTTPException(status.HTTP_409_CONFLICT, [f"import {import_id} is {rec.state}: nothing to cancel"])
    return _import_out(worker.cancel(import_id, user.name) or rec)  # it may have ended meanwhile: its record as it is


@router.get("", response_model=list[DatasetOut], summary="The datasets you may use")
def list_datasets(user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> list[DatasetOut]:
    """Your own datasets and those an admin shared (an admin sees all), each with every version you may see."""
    groups: dict[tuple[str, str], list[Manifest]] = {}
    for m in catalog.manifests():
        if may_see(m, user):
            groups.setdefault((m.owner, m.name), []).append(m)
    return [_dataset_out(owner, name, ms) for (owner, name), ms in sorted(groups.items())]


@router.get("/{owner}/{name}", response_model=DatasetOut, summary="One dataset: its versions and their manifests")
def get_dataset(owner: Name, name: Name, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> DatasetOut:
    return _dataset_out(owner, name, visible_versions(catalog, owner, name, user))


@router.delete("/{owner}/{name}", response_model=Deleted, summary="Delete a dataset, or one version of it")
def delete_dataset(owner: Name, name: Name, version: int | None = Version, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> Deleted:
    """Its owner or an admin; jobs already pinned to a deleted version fail when they read it."""
    visible = visible_versions(catalog, owner, name, user)
    if owner != user.name and not user.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, [f"{owner}/{name}: only its owner or an admin deletes a dataset"])
    if version is not None and version not in [m.version for m in visible]:
        raise HTTPException(status.HTTP_404_NOT_FOUND, [f"{owner}/{name} has no version {version}"])
    removed = catalog.delete(owner, name, version)
    return Deleted(deleted=[f"{owner}/{name}@{v}" for v in removed])


def _set_shared(owner: str, name: str, shared: bool, user: User, catalog: Catalog) -> DatasetOut:
    if not user.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, ["only an admin shares or unshares a dataset"])
    versions = visible_versions(catalog, owner, name, user)
    for m in versions:
        if m.shared != shared:
            m.shared = shared
            catalog.update(m)
    return _dataset_out(owner, name, versions)


@router.post("/{owner}/{name}/share", response_model=DatasetOut, summary="Share every version of a dataset with every user (admins)")
def share(owner: Name, name: Name, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> DatasetOut:
    """Versions imported later are not shared until this is called again."""
    return _set_shared(owner, name, True, user, catalog)


@router.post("/{owner}/{name}/unshare", response_model=DatasetOut, summary="Make a dataset its owner's again (admins)")
def unshare(owner: Name, name: Name, user: User = Depends(current_user), catalog: Catalog = Depends(get_catalog)) -> DatasetOut:
    return _set_shared(owner, name, False, user, catalog)


@router.get("/{owner}/{name}/samples", response_model=SamplesOut, summary="A few rows of a dataset: thumbnails of images, values of others")
def samples(
    owner: Name,
    name: Name,
    version: int | None = Query(None, ge=1, le=999_999_999, description="default: the newest you may see"),
    count: int = Query(12, ge=1, le=MAX_SAMPLES),
    split: Literal["train", "val", "test"] = Query("train"),
    label: int | None = Query(None, ge=0, le=10_000_000, description="only rows of this class (its index in classes)"),
    user: User = Depends(current_user),
    catalog: Catalog = Depends(get_catalog),
) -> SamplesOut:
    """Read from the split's first shards (at most a few), spread over the classes as evenly as they allow."""
    visible = visible_versions(catalog, owner, name, user)
    m = visible[-1] if version is None else next((v for v in visible if v.version == version), None)
    if m is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, [f"{owner}/{name} has no version {version}"])
    if label is not None and label >= m.n_classes:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [f"label: {m.ref} has {m.n_classes} classes (0 to {m.n_classes - 1}), got {label}"])
    try:
        picked = sampling.pick(catalog.path_of(m), m, split, count, label)
    except DataError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, [str(e)]) from None
    out = []
    for s in picked:
        if sampling.is_image(m, s.x):
            out.append(Sample(split=split, label=s.label, class_name=s.cls, png_base64=base64.b64encode(sampling.png(s.x)).decode("ascii")))
        else:
            out.append(Sample(split=split, label=s.label, class_name=s.cls, value=sampling.json_row(s.x)))
    return SamplesOut(ref=m.ref, kind=m.kind, shape=m.shape, samples=out)
