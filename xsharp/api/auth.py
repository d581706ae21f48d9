"""Bearer tokens (stored hashed) map to users; every call but health and metrics needs one."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from xsharp.cluster.store import Job, Store, User

bearer = HTTPBearer(auto_error=False, description="a token from `xsharp users add NAME`")


def get_store(request: Request) -> Store:
    return request.app.state.store


CALLER = "xsharp.caller"  # request.state key: the user the body gate already found for this request's token
PARSED = "xsharp.json"  # request.state key: a JSON body, as the body gate parsed it


def is_json(content_type: bytes | None) -> bool:
    """As FastAPI decides: no content type, application/json or application/*+json."""
    media = (content_type or b"application/json").split(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


async def current_user(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer), store: Store = Depends(get_store)) -> User:
    """The caller. On the event loop: a token lookup is one indexed read, cheaper than a thread hop."""
    known = request.scope.get("state", {}).get(CALLER)
    if known is not None:
        return known
    return user_for(creds.credentials if creds else None, store)


def user_for(token: str | None, store: Store) -> User:
    """The user ``token`` names, or 401 saying why not."""
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    user = store.user_for_token(token)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return user


def visible_job(job_id: int, user: User, store: Store) -> Job:
    """The job, if it exists and ``user`` may see it (its owner or an admin). Another user's job
    gets the same 404 as a missing one: job ids tell nobody what others run."""
    job = store.get(job_id)
    if job is None or (job.user != user.name and not user.admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job
