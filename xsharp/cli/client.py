"""The CLI's HTTP client. URL and token come from flags, then XSHARP_URL / XSHARP_TOKEN, then the
user's client config ``$XSHARP_CONFIG`` (default ``~/.config/xsharp/config``, mode 0600) that
`xsharp server` writes on first start. The config lives in the user's home, never in the job
store: the server keeps tokens only hashed, and no job may read the store's folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml

from .common import EXIT_FAILED, fail

DEFAULT_URL = "http://127.0.0.1:8080"

UrlOption = typer.Option(None, "--url", envvar="XSHARP_URL", help="The xsharp server (default: from ~/.config/xsharp/config, else http://127.0.0.1:8080).")
TokenOption = typer.Option(None, "--token", envvar="XSHARP_TOKEN", help="Your API token (default: from ~/.config/xsharp/config).")
CONFIG_ENV = "XSHARP_CONFIG"


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    return base / "xsharp" / "config"


def move_legacy_config(store_root: Path) -> Path | None:
    """Servers before this one wrote the admin's token into the job store's folder (``config``
    beside ``xsharp.db``). Move it to the client config, or drop it if one is there already.
    Returns the client config's path if anything moved."""
    legacy = store_root / "config"
    if not legacy.is_file() or legacy.resolve() == config_path().resolve():
        return None
    try:
        data = yaml.safe_load(legacy.read_text()) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    moved = None
    if isinstance(data, dict) and data.get("token"):
        if not read_config().get("token"):
            moved = write_config(data.get("url") or DEFAULT_URL, data["token"])
        else:  # the user's config already holds a token (another server's?): keep this one beside it
            moved = config_path().with_name(config_path().name + ".from-store")
            _write_private(moved, {"url": data.get("url") or DEFAULT_URL, "token": data["token"]})
    legacy.unlink()
    return moved


def read_config() -> dict:
    path = config_path()
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def write_config(url: str, token: str) -> Path:
    """The client config, created 0600 (never readable by anyone else, not for a moment)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private(path, {"url": url, "token": token})
    return path


def _write_private(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: tighten it before the token goes in
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump(data))


@dataclass
class Client:
    url: str
    token: str | None

    @classmethod
    def from_options(cls, url: str | None, token: str | None) -> Client:
        cfg = read_config()
        return cls((url or cfg.get("url") or DEFAULT_URL).rstrip("/"), token or cfg.get("token"))

    def _http(self):
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            with self._http() as http:
                r = http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise fail(f"cannot reach the xsharp server at {self.url}: {e}", EXIT_FAILED) from None
        return self._check(r)

    def _check(self, r) -> Any:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            lines = detail if isinstance(detail, list) else [detail]
            code = EXIT_FAILED if r.status_code >= 500 else 2
            raise fail(f"{r.status_code}: " + "\n  ".join(str(x) for x in lines), code)
        if r.status_code == 204 or not r.content:
            return None
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    def stream(self, path: str, **params: Any):
        import httpx

        try:
            with self._http() as http, http.stream("GET", path, params=params, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                yield from r.iter_text()
        except httpx.HTTPError as e:
            raise fail(f"cannot reach the xsharp server at {self.url}: {e}", EXIT_FAILED) from None
