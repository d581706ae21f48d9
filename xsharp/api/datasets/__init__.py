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

from fastapi import APIRouter

from . import catalog_routes, import_routes, sample_routes
from .access import catalog_for, find_visible, get_catalog, get_policy, may_see, pin_dataset, visible_versions
from .catalog_routes import DatasetOut, DatasetVersion, Deleted, Name, Version, delete_dataset, get_dataset, list_datasets, share, unshare
from .import_routes import IMPORT_FORMATS, MAX_PENDING_IMPORTS, ImportId, ImportOut, cancel_import, get_import, list_imports, start_import
from .import_worker import PROGRESS_EVERY, ImportRequest, ImportWorker, get_imports
from .sample_routes import MAX_SAMPLES, Sample, SamplesOut, samples

__all__ = [
    "IMPORT_FORMATS",
    "MAX_PENDING_IMPORTS",
    "MAX_SAMPLES",
    "PROGRESS_EVERY",
    "DatasetOut",
    "DatasetVersion",
    "Deleted",
    "ImportId",
    "ImportOut",
    "ImportRequest",
    "ImportWorker",
    "Name",
    "Sample",
    "SamplesOut",
    "Version",
    "cancel_import",
    "catalog_for",
    "delete_dataset",
    "find_visible",
    "get_catalog",
    "get_dataset",
    "get_import",
    "get_imports",
    "get_policy",
    "list_datasets",
    "list_imports",
    "may_see",
    "pin_dataset",
    "router",
    "samples",
    "share",
    "start_import",
    "unshare",
    "visible_versions",
]

router = APIRouter()  # /v1/datasets: imports, then the catalog, then samples (the order the API documents them in)
router.include_router(import_routes.router)
router.include_router(catalog_routes.router)
router.include_router(sample_routes.router)
