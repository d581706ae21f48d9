"""Who sees which dataset of the service's catalog, and the spec's dataset pinned to the version a user may use."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from xsharp.algos.datasets import NAMED
from xsharp.cluster.policy import Policy
from xsharp.cluster.store import Store, User
from xsharp.data.catalog import Catalog, DatasetRef
from xsharp.data.manifest import Manifest
from xsharp.fileguard import DataError


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
    name = data.get("dataset")
    if not isinstance(name, str) or name in NAMED:
        return data
    if policy.datasets_root is None:  # a server without a catalog
        raise DataError(f"data.dataset: no dataset {name}")
    manifest = find_visible(Catalog(policy.datasets_root), name, user)
    return {**data, "dataset": manifest.ref}
