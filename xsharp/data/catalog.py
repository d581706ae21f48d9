"""Where imported datasets live, and how a spec names one.

A catalog is a folder: ``<root>/<owner>/<name>/v<N>/`` holds version N's ``manifest.json`` and
``shards/``. ``xsharp data`` on one's own machine uses ``$XSHARP_DATASETS`` (default
``~/.local/share/xsharp/datasets``) with the login name as owner; the job service keeps one
under its store (``<XSHARP_HOME>/datasets``) with its users as owners.

A spec names a dataset ``NAME``, ``NAME@VERSION``, ``OWNER/NAME`` or ``OWNER/NAME@VERSION``;
without an owner it is the caller's own, without a version the newest. A version is made whole
in a staging folder and renamed into place, so a crashed import never leaves half a version.

Version numbers are never reused: ``<root>/<owner>/<name>/.last-version`` holds the highest number
ever given, written before the version is renamed into place and kept when versions (or all of
them) are deleted, so a job pinned to ``owner/name@N`` never reads other data under that number.
"""

from __future__ import annotations

import contextlib
import difflib
import getpass
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from xsharp.fileguard import DataError
from xsharp.files import write_atomic

from .manifest import MANIFEST, NAME, Manifest
from .named import NAMED

try:
    import fcntl
except ImportError:  # not on POSIX: the rename alone keeps two commits apart
    fcntl = None

ENV = "XSHARP_DATASETS"
_REF = re.compile(rf"(?:(?P<owner>{NAME})/)?(?P<name>{NAME})(?:@(?P<version>[0-9]{{1,9}}))?")
STAGING = ".staging-"
STALE_STAGING_SECONDS = 24 * 3600  # a staging folder whose heartbeat is older belongs to a dead import
HEARTBEAT = ".heartbeat"  # in a staging folder: touched at each progress step of its import (Catalog.touch)
LAST_VERSION = ".last-version"  # in <owner>/<name>/: the highest version number ever given
LOCK = ".lock"  # in <owner>/<name>/: held while a number is given or versions are deleted
MAX_COMMIT_ATTEMPTS = 100


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
    def parse(cls, text: str, field: str = "data.dataset") -> DatasetRef:
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
    def local(cls) -> Catalog:
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
        if not versions and ref.version is not None and ref.version <= self._last_version(self.root / owner / ref.name):
            raise DataError(f"data.dataset: {owner}/{ref.name} has no version {ref.version}: it was deleted")
        if not versions:
            near = difflib.get_close_matches(ref.name, list(NAMED), n=1) if ref.owner is None else []
            hint = f"; did you mean the bundled {near[0]!r}?" if near else " (xsharp data list shows the datasets)"
            raise DataError(f"data.dataset: no dataset {DatasetRef(ref.name, ref.owner)}{hint}")
        version = versions[-1] if ref.version is None else ref.version
        if version not in versions:
            if version <= self._last_version(self.root / owner / ref.name):
                raise DataError(f"data.dataset: {owner}/{ref.name} has no version {version}: it was deleted (versions: {', '.join(map(str, versions))})")
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
                out += self.manifests_of(o, name)
        return out

    def manifests_of(self, owner: str, name: str) -> list[Manifest]:
        """Every readable version of ``owner/name``, oldest first."""
        out = []
        for v in self.versions(owner, name):
            try:
                out.append(Manifest.read(self.folder(owner, name, v)))
            except DataError:
                continue  # a damaged manifest hides its version; `data show` names the problem
        return out

    # ----------------------------------------------------------------- version numbers
    @staticmethod
    def _last_version(base: Path) -> int:
        """The highest version number ever given under ``base`` (0: none, or a catalog from before the mark)."""
        try:
            text = (base / LAST_VERSION).read_text().strip()
        except OSError:
            return 0
        return int(text) if text.isdigit() and len(text) <= 12 else 0

    @staticmethod
    def _taken(base: Path) -> int:
        """The highest ``vN`` folder name under ``base``, with a manifest or not."""
        try:
            names = [p.name for p in base.iterdir()]
        except OSError:
            return 0
        return max((int(n[1:]) for n in names if n.startswith("v") and n[1:].isdigit() and len(n) <= 13), default=0)

    @staticmethod
    def _mark(base: Path, version: int) -> None:
        """Raise the high-water mark to ``version`` (never lower it), atomically."""
        if Catalog._last_version(base) >= version:
            return
        write_atomic(base / LAST_VERSION, f"{version}\n")

    @staticmethod
    @contextlib.contextmanager
    def _locked(base: Path):
        """Hold ``base``'s lock: commits and deletes of one name, in any process, one at a time."""
        if fcntl is None:
            yield
            return
        fd = os.open(base / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ----------------------------------------------------------------- making and removing
    def staging(self, owner: str, name: str) -> Path:
        """A fresh folder to build a version in; stale ones (a dead import: no heartbeat for a day) are swept."""
        DatasetRef.parse(f"{owner}/{name}", "name")
        base = self.root / owner / name
        base.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in base.glob(STAGING + "*"):
            if now - self._alive_at(old) > STALE_STAGING_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        path = base / f"{STAGING}{uuid.uuid4().hex[:12]}"
        path.mkdir()
        self.touch(path)
        return path

    @staticmethod
    def touch(staging: Path) -> None:
        """The import building in ``staging`` is alive: call it at each progress step (cheap), or an
        import running over a day could have its folder swept by another import of the name."""
        beat = Path(staging) / HEARTBEAT
        try:
            os.utime(beat)
        except FileNotFoundError:
            try:
                beat.touch()
            except OSError:
                pass
        except OSError:
            pass

    @staticmethod
    def _alive_at(staging: Path) -> float:
        """When the import in ``staging`` last showed it was alive: its heartbeat, else the folder's own mtime."""
        times = []
        for p in (Path(staging) / HEARTBEAT, Path(staging)):
            try:
                times.append(p.stat().st_mtime)
            except OSError:
                pass
        return max(times, default=time.time())  # gone already, or unreadable: not ours to sweep now

    def sweep_staging(self) -> int:
        """Remove every staging folder under the root (every owner and name), and the trash of
        interrupted deletes. Only when no import can be running: the service calls it at start.
        Returns how many were removed."""
        if not self.root.is_dir():
            return 0
        swept = 0
        for old in self.root.glob(f"*/*/{STAGING}*"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
                swept += not old.exists()
        return swept

    def commit(self, staging: Path, manifest: Manifest) -> Manifest:
        """Give the staged dataset the next version number (never one given before, even to a
        deleted version) and move it into place (atomic). DataError when it cannot land after
        :data:`MAX_COMMIT_ATTEMPTS` tries."""
        base = staging.parent
        (staging / HEARTBEAT).unlink(missing_ok=True)
        error: OSError | None = None
        for _ in range(MAX_COMMIT_ATTEMPTS):
            with self._locked(base):
                manifest.version = max(self._taken(base), self._last_version(base)) + 1
                try:
                    manifest.write(staging)
                    self._mark(base, manifest.version)  # before the rename: a crash between burns the number, never reuses it
                    staging.rename(base / f"v{manifest.version}")  # fails if a process without the lock took the number
                    return manifest
                except OSError as e:
                    error = e
            time.sleep(0.01)
        reason = (error.strerror or type(error).__name__) if error is not None else "unknown"
        raise DataError(f"{manifest.owner}/{manifest.name}: could not commit the new version after {MAX_COMMIT_ATTEMPTS} attempts ({reason})")

    def update(self, manifest: Manifest) -> None:
        """Rewrite a manifest's mutable fields (``shared``)."""
        manifest.write(self.path_of(manifest))

    def delete(self, owner: str, name: str, version: int | None = None) -> list[int]:
        """Remove one version, or every version; the versions removed. The name's folder stays,
        with its high-water mark, so the numbers removed are never given again."""
        base = self.root / owner / name
        if not base.is_dir():
            return []
        with self._locked(base):
            present = self.versions(owner, name)
            versions = present if version is None else [version] if version in present else []
            if present:
                self._mark(base, max(present))
            trash = []
            for v in versions:
                folder = self.folder(owner, name, v)
                trash.append(folder.with_name(f"{STAGING}deleted-{uuid.uuid4().hex[:8]}"))
                folder.rename(trash[-1])  # gone from view at once; the bytes go after, outside the lock
        for t in trash:
            shutil.rmtree(t, ignore_errors=True)
        return versions
