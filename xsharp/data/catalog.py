"""Where imported datasets live, and how a spec names one.

A catalog is a folder: ``<root>/<owner>/<name>/v<N>/`` holds version N's ``manifest.json`` and
``shards/``. ``xsharp data`` on one's own machine uses ``$XSHARP_DATASETS`` (default
``~/.local/share/xsharp/datasets``) with the login name as owner; the job service keeps one
under its store (``<XSHARP_HOME>/datasets``) with its users as owners.

A spec names a dataset ``NAME``, ``NAME@VERSION``, ``OWNER/NAME`` or ``OWNER/NAME@VERSION``;
without an owner it is the caller's own, without a version the newest. A version is made whole
in a staging folder and renamed into place, so a crashed import never leaves half a version.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from xsharp.fileguard import DataError

from .manifest import MANIFEST, Manifest

ENV = "XSHARP_DATASETS"
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_REF = re.compile(rf"(?:(?P<owner>{NAME})/)?(?P<name>{NAME})(?:@(?P<version>[0-9]{{1,9}}))?")
STAGING = ".staging-"
STALE_STAGING_SECONDS = 24 * 3600


def local_owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def local_root() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".local" / "share" / "xsharp" / "datasets").expanduser()


@dataclass(frozen=True)
class DatasetRef:
    name: str
    owner: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str, field: str = "data.dataset") -> "DatasetRef":
        m = _REF.fullmatch(text) if isinstance(text, str) else None
        if m is None or m["name"] in (".", ".."):
            raise DataError(f"{field}: not a dataset name (NAME, NAME@VERSION or OWNER/NAME[@VERSION]; a name is letters, digits, '.', '_' or '-', at most 64)")
        return cls(m["name"], m["owner"], int(m["version"]) if m["version"] else None)

    @staticmethod
    def looks_like(text: str) -> bool:
        return isinstance(text, str) and _REF.fullmatch(text) is not None

    def __str__(self) -> str:
        return (f"{self.owner}/" if self.owner else "") + self.name + (f"@{self.version}" if self.version is not None else "")


class Catalog:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def local(cls) -> "Catalog":
        return cls(local_root())

    def folder(self, owner: str, name: str, version: int) -> Path:
        return self.root / owner / name / f"v{version}"

    def versions(self, owner: str, name: str) -> list[int]:
        base = self.root / owner / name
        if not base.is_dir():
            return []
        found = []
        for p in base.iterdir():
            if p.name.startswith("v") and p.name[1:].isdigit() and (p / MANIFEST).is_file():
                found.append(int(p.name[1:]))
        return sorted(found)

    def find(self, ref: DatasetRef | str, user: str) -> Manifest:
        """The manifest ``ref`` names, seen by ``user`` (a bare name is the user's own)."""
        ref = DatasetRef.parse(ref) if isinstance(ref, str) else ref
        owner = ref.owner or user
        versions = self.versions(owner, ref.name)
        if not versions:
            import difflib

            from xsharp.algos.datasets import NAMED

            near = difflib.get_close_matches(ref.name, list(NAMED), n=1) if ref.owner is None else []
            hint = f"; did you mean the bundled {near[0]!r}?" if near else " (xsharp data list shows the datasets)"
            raise DataError(f"data.dataset: no dataset {DatasetRef(ref.name, ref.owner)}{hint}")
        version = versions[-1] if ref.version is None else ref.version
        if version not in versions:
            raise DataError(f"data.dataset: {owner}/{ref.name} has no version {version} (versions: {', '.join(map(str, versions))})")
        return Manifest.read(self.folder(owner, ref.name, version))

    def path_of(self, manifest: Manifest) -> Path:
        return self.folder(manifest.owner, manifest.name, manifest.version)

    def manifests(self, owner: str | None = None) -> list[Manifest]:
        """Every version of every dataset (of ``owner``), by owner, name and version."""
        out = []
        owners = [owner] if owner is not None else sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        for o in owners:
            base = self.root / o
            if not base.is_dir():
                continue
            for name in sorted(p.name for p in base.iterdir() if p.is_dir()):
                for v in self.versions(o, name):
                    try:
                        out.append(Manifest.read(self.folder(o, name, v)))
                    except DataError:
                        continue  # a damaged manifest hides its version; `data show` names the problem
        return out

    # ----------------------------------------------------------------- making and removing
    def staging(self, owner: str, name: str) -> Path:
        """A fresh folder to build a version in; stale ones (a crashed import) are swept."""
        DatasetRef.parse(f"{owner}/{name}", "name")
        base = self.root / owner / name
        base.mkdir(parents=True, exist_ok=True)
        for old in base.glob(STAGING + "*"):
            try:
                if time.time() - old.stat().st_mtime > STALE_STAGING_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        path = base / f"{STAGING}{uuid.uuid4().hex[:12]}"
        path.mkdir()
        return path

    def commit(self, staging: Path, manifest: Manifest) -> Manifest:
        """Give the staged dataset the next version number and move it into place (atomic)."""
        base = staging.parent
        while True:
            manifest.version = max(self.versions(manifest.owner, manifest.name), default=0) + 1
            manifest.write(staging)
            try:
                staging.rename(base / f"v{manifest.version}")  # fails if a concurrent import took the number
                return manifest
            except OSError:
                time.sleep(0.01)

    def update(self, manifest: Manifest) -> None:
        """Rewrite a manifest's mutable fields (``shared``)."""
        manifest.write(self.path_of(manifest))

    def delete(self, owner: str, name: str, version: int | None = None) -> list[int]:
        """Remove one version, or every version; the versions removed."""
        versions = self.versions(owner, name) if version is None else [version] if version in self.versions(owner, name) else []
        for v in versions:
            folder = self.folder(owner, name, v)
            trash = folder.with_name(f"{STAGING}deleted-{uuid.uuid4().hex[:8]}")
            folder.rename(trash)  # gone from view at once; the bytes go after
            shutil.rmtree(trash, ignore_errors=True)
        base = self.root / owner / name
        if base.is_dir() and not any(base.iterdir()):
            base.rmdir()
        return versions
