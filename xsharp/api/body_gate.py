"""The request body gate: every body is read and checked before the app sees it (size, JSON
that json.loads would refuse, duplicate keys, depth, integer digits), and a body to /v1 from a
caller the store does not know is not read at all. Every refusal is the API's one error body."""

from __future__ import annotations

import json
import re
import sys
from json.decoder import scanstring
from typing import Any

import anyio
import numpy as np
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from xsharp.searchspec import MAX_DEPTH  # the gate refuses past the depth the spec walks stop at
from xsharp.spec import format_error_list

from .auth import CALLER, PARSED, is_json, user_for
from .schemas import ErrorOut

MAX_BODY = 1024 * 1024  # a job spec is a few kB; nothing legitimate comes near this


def error_response(status: int, problems: list[str], headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ErrorOut(detail=problems).model_dump(), status_code=status, headers=headers)


# --------------------------------------------------------------------------- the request body gate
class BodyProblem(ValueError):
    """A request body the gate refuses: where (a path into the body) and what is wrong."""

    def __init__(self, loc: tuple, msg: str):
        super().__init__(msg)
        self.loc, self.msg = loc, msg

    def lines(self) -> list[str]:
        return format_error_list([{"loc": self.loc, "type": "rule", "msg": self.msg}])


_TOKEN = re.compile(
    r"[ \t\n\r]*(?:(?P<open>[\[{])|(?P<close>[\]}])|(?P<comma>,)|(?P<colon>:)|(?P<string>\")"
    r"|(?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null|NaN|Infinity|-Infinity))"
)
_SPACE = re.compile(r"[ \t\n\r]*")
_INT_DIGITS = sys.get_int_max_str_digits()  # 0: no limit


INLINE_CHECK_BYTES = 64 * 1024  # bodies up to this size are checked on the event loop (a refused one: about 45 ms at most)


CLOSE_CHECK_BYTES = 64 * 1024  # a refused body up to this size is walked to say where it goes wrong; a bigger one is not


class _Duplicate(Exception):
    def __init__(self, key: str):
        self.key = key


def _no_duplicates(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        raise _Duplicate(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


def _depth(value: Any) -> int:
    """How many containers deep ``value`` nests (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string in UTF-8 bytes, escapes included
_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))  # every byte but the brackets: deleted by translate
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


def _text_depth(body: bytes) -> int | None:
    """How deep valid JSON ``body`` nests, from its brackets outside strings: C-speed passes over
    the bytes, where walking the parsed value costs a Python step a number (4 ms for 12,000).
    None where the body is not UTF-8 (JSON may be UTF-16 or -32)."""
    if b"\x00" in body[:4] or body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None
    brackets = _STRING.sub(b"", body).translate(None, _BRACKETS)
    return int(np.cumsum(_STEP[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32).max(initial=0))


def check_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Raise BodyProblem unless ``body`` is JSON that ``json.loads`` takes, with no object holding a key
    twice and no value nested deeper than ``max_depth``; return its value. A spec that passes is
    read once by the C parser (about 20 microseconds); anything else goes through
    :func:`_check_json_closely`, which says what is wrong and where."""
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        if len(body) > CLOSE_CHECK_BYTES:  # the C parser's own place: a walk in Python would take seconds
            raise BodyProblem(("body",), f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except _Duplicate as e:
        if len(body) > CLOSE_CHECK_BYTES:
            raise BodyProblem(("body",), f"an object holds the key {e.key[:100]!r} twice") from None
    except (ValueError, RecursionError):
        if len(body) > CLOSE_CHECK_BYTES:  # the parser's recursion ran out: read the depth off the brackets
            depth = _text_depth(body)
            raise BodyProblem(("body",), f"nested deeper than {max_depth} levels" if depth is None or depth > max_depth else "not valid JSON") from None
    else:
        depth = _text_depth(body)
        if (depth if depth is not None else _depth(value)) <= max_depth:
            return value
        if len(body) > CLOSE_CHECK_BYTES:
            raise BodyProblem(("body",), f"nested deeper than {max_depth} levels")
    _check_json_closely(body, max_depth)


def _check_json_closely(body: bytes, max_depth: int) -> None:
    """Raise BodyProblem unless ``body`` is JSON that ``json.loads`` takes, with no object holding a key
    twice and no value nested deeper than ``max_depth``. One pass with an explicit stack, so no depth
    of nesting reaches a recursion limit; nothing is kept but the keys of the objects still open."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")  # as json.loads decodes bytes
    except UnicodeDecodeError:
        raise BodyProblem(("body",), "not UTF-8 text") from None
    path: list = []  # the keys and indexes down to the value being read
    open_keys: list[set | None] = []  # per open container: the keys seen so far (an object) or None (an array)
    want, pos = "value", 0  # value | first_value (just after '[') | key | first_key (just after '{') | colon | next | end
    while m := _TOKEN.match(text, pos):
        token, start, pos = m.lastgroup, m.start(m.lastgroup), m.end()
        if want in ("value", "first_value") and token in ("open", "string", "scalar"):
            if token == "open":
                if len(open_keys) == max_depth:
                    raise BodyProblem(("body",), f"nested deeper than {max_depth} levels")
                is_object = text[start] == "{"
                open_keys.append(set() if is_object else None)
                path += [] if is_object else [0]
                want = "first_key" if is_object else "first_value"
                continue
            if token == "string":
                pos = _string(text, pos)[1]
            elif _INT_DIGITS and len(digits := m["scalar"].lstrip("-")) > _INT_DIGITS and digits.isdigit():
                raise BodyProblem(("body",), f"an integer with over {_INT_DIGITS} digits")  # json.loads' int() would refuse it
        elif want in ("key", "first_key") and token == "string":
            key, pos = _string(text, pos)
            if key in open_keys[-1]:
                raise BodyProblem((*path, key), "duplicate key")
            open_keys[-1].add(key)
            path.append(key)
            want = "colon"
            continue
        elif want == "colon" and token == "colon":
            want = "value"
            continue
        elif want == "next" and token == "comma":
            if open_keys[-1] is None:
                path[-1] += 1
                want = "value"
            else:
                path.pop()
                want = "key"
            continue
        elif want in ("next", "first_value", "first_key") and token == "close" and text[start] == ("]" if open_keys[-1] is None else "}"):
            if want != "first_key":
                path.pop()  # the last key or index
            open_keys.pop()
        else:
            pos = start
            break
        want = "next" if open_keys else "end"  # a value has been read
    pos = _SPACE.match(text, pos).end()
    if want != "end" or pos < len(text):
        column = pos - text.rfind("\n", 0, pos)
        found = "end of body" if pos == len(text) else repr(text[pos])
        raise BodyProblem(("body",), f"not valid JSON: unexpected {found} at line {text.count(chr(10), 0, pos) + 1} column {column}")


def _string(text: str, pos: int) -> tuple[str, int]:
    try:
        return scanstring(text, pos)
    except json.JSONDecodeError as e:
        raise BodyProblem(("body",), f"not valid JSON: {e.msg.removesuffix(' at')} at line {e.lineno} column {e.colno}") from None


class RequestBodyGate:
    """Reads each request's body before the app does: 413 over ``limit`` bytes, declared or streamed;
    422 for a JSON body json.loads would refuse, with a key twice in one object, or nested deeper
    than ``max_depth``. Otherwise the app gets the body as it was sent, and later receive() calls
    (a streaming response waiting for the client to leave) go to the server."""

    ONCE = (b"content-type", b"content-length", b"transfer-encoding", b"authorization")  # headers that must not come twice

    def __init__(self, app, limit: int = MAX_BODY, max_depth: int = MAX_DEPTH, upload_limit: int | None = None, guarded: str = "/v1/"):
        """``guarded``: the paths whose routes take bodies (and tokens); other paths never have a body read."""
        self.app, self.limit, self.max_depth, self.guarded = app, limit, max_depth, guarded
        self.upload_limit = upload_limit or limit  # a prediction's body: an uploaded photo or WAV

    def limit_for(self, path: str) -> int:
        return self.upload_limit if path.startswith("/v1/models/") and path.endswith("/predict") else self.limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if len(headers) != len(scope["headers"]) and (twice := [k for k in self.ONCE if sum(1 for h, _ in scope["headers"] if h == k) > 1]):
            # the gate and the routes would read different ones (the last; the first): refuse, never guess
            return await error_response(400, [f"header {twice[0].decode()}: sent more than once"])(scope, receive, send)
        if not scope["path"].startswith(self.guarded):  # pages, /healthz, /metrics: no route there reads a body
            return await self.app(scope, receive, send)
        declared = headers.get(b"content-length")
        sends_body = (declared is not None and declared != b"0") or b"transfer-encoding" in headers
        if sends_body and (refused := self._unknown_caller(scope, headers)):
            # nobody unknown gets a megabyte read and walked: the route would refuse them anyway
            return await error_response(refused.status_code, [refused.detail], refused.headers)(scope, receive, send)
        limit = self.limit_for(scope["path"])
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._too_large(scope, receive, send, limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left mid-body: nobody to answer
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await self._too_large(scope, receive, send, limit)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and is_json(headers.get(b"content-type")):
            try:
                if len(body) <= INLINE_CHECK_BYTES:  # a spec: tens of microseconds, less than a thread hop
                    value = check_json(body, self.max_depth)
                else:  # up to a second on a hostile 1 MiB: off the event loop
                    value = await anyio.to_thread.run_sync(check_json, body, self.max_depth)
                scope.setdefault("state", {})[PARSED] = value  # a route that reads the body as JSON needs no second parse
            except BodyProblem as e:
                return await error_response(422, e.lines())(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    def _unknown_caller(scope, headers: dict) -> HTTPException | None:
        """The routes' own 401 for a caller without a known bearer token (None: known)."""
        store = getattr(getattr(scope.get("app"), "state", None), "store", None)
        if store is None:  # not inside the app: the routes decide
            return None
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        try:
            user = user_for(token.strip() if scheme.lower() == "bearer" else None, store)
        except HTTPException as refused:
            return refused
        scope.setdefault("state", {})[CALLER] = user  # the route's current_user takes it from here: one lookup a request
        return None

    async def _too_large(self, scope, receive, send, limit: int):
        await error_response(413, [f"body: over {limit} bytes"])(scope, receive, send)
