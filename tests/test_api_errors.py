"""What the API answers to requests it refuses: one error body, {"detail": [str, ...]}, for every
4xx; the request body gate (413 over the limit however it is sent, 422 for a duplicate key, deep
nesting or bad JSON); and an OpenAPI document that says so for every operation.

Against the real app under a real uvicorn on 127.0.0.1 (the fuzz tests' server)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import TINY
from tests.test_api_fuzz import api_server  # noqa: F401 - the same live server, a fresh one for this module
from xsharp.api.body_gate import MAX_BODY, MAX_DEPTH, BodyProblem, check_json

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(api_server):  # noqa: F811
    url, token = api_server
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        yield http


def problems(r: httpx.Response) -> list[str]:
    """The error body's lines, once it is checked to be the one error shape."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], list) and body["detail"], body
    assert all(isinstance(line, str) for line in body["detail"]), body
    return body["detail"]


# --------------------------------------------------------------------------- size
def test_a_chunked_body_over_the_limit_is_413(client):
    def chunks():  # no Content-Length: the server learns the size only by reading
        for _ in range(32):
            yield b" " * (64 * 1024)

    r = client.post("/v1/jobs", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and problems(r) == [f"body: over {MAX_BODY} bytes"]


def test_a_declared_body_over_the_limit_is_413_unread(client):
    r = client.post("/v1/searches", content=b"x" * (MAX_BODY + 1), headers=JSON)
    assert r.status_code == 413 and problems(r) == [f"body: over {MAX_BODY} bytes"]


def test_a_body_at_the_limit_gets_through_the_gate(client):
    spec = json.dumps(TINY | {"name": "padded"})
    r = client.post("/v1/jobs", content=spec + " " * (MAX_BODY - len(spec)), headers=JSON)
    assert r.status_code == 201, r.text
    assert client.get(f"/v1/jobs/{r.json()['id']}").json()["spec"]["name"] == "padded"  # the body reached the app unchanged


# --------------------------------------------------------------------------- duplicate keys
@pytest.mark.parametrize(
    "body, line",
    [
        ('{"name": "a", "name": "b"}', "name: duplicate key"),
        ('{"name": "a", "n\\u0061me": "b"}', "name: duplicate key"),  # the same key once decoded
        ('{"train": {"epochs": 1, "batch_size": 2, "epochs": 3}}', "train.epochs: duplicate key"),
        ('{"model": [{"rbm": {"hidden": 3}}, {"softmax": {}, "softmax": {}}]}', "model[1].softmax: duplicate key"),
    ],
)
def test_a_key_twice_in_one_object_is_422_naming_its_path(client, body, line):
    for path in ("/v1/jobs", "/v1/searches"):
        r = client.post(path, content=body, headers=JSON)
        assert r.status_code == 422 and problems(r) == [line], path


def test_the_same_key_in_two_objects_is_no_duplicate(client):
    spec = TINY | {"name": "twice", "pretrain": {"epochs": 1}, "train": TINY["train"] | {"epochs": 1}}
    assert client.post("/v1/jobs", json=spec).status_code == 201


# --------------------------------------------------------------------------- nesting
@pytest.mark.parametrize(
    "body",
    [
        "[" * 300_000 + "]" * 300_000,  # 600 kB: well inside the size limit
        '{"a":' * 150_000 + "1" + "}" * 150_000,
        "[" * 900_000,  # never closed: refused on the way down, not at the end
        '{"name": "deep", "data": ' + "[" * (MAX_DEPTH) + "]" * MAX_DEPTH + "}",  # one over: the spec is level 1
    ],
)
def test_deep_nesting_is_422_and_never_recursion(client, body):
    for path in ("/v1/jobs", "/v1/searches"):
        r = client.post(path, content=body, headers=JSON)
        assert r.status_code == 422 and problems(r) == [f"body: nested deeper than {MAX_DEPTH} levels"], path
    assert client.get("/healthz").status_code == 200


def test_nesting_at_the_bound_reaches_the_app(client):
    body = '{"name": "deep", "data": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    r = client.post("/v1/searches", content=body, headers=JSON)
    assert r.status_code == 422 and not any("nested" in line for line in problems(r))  # the spec's own check answers


# --------------------------------------------------------------------------- bad JSON
@pytest.mark.parametrize(
    "body, line",
    [
        (b"{not json", "body: not valid JSON: unexpected 'n' at line 1 column 2"),
        (b'{"name": "a",}', "body: not valid JSON: unexpected '}' at line 1 column 14"),
        (b'{"name": "a"}\n[]', "body: not valid JSON: unexpected '[' at line 2 column 1"),
        (b'{"name": ', "body: not valid JSON: unexpected end of body at line 1 column 10"),
        (b'{"name": "a\x01"}', "body: not valid JSON: Invalid control character at line 1 column 12"),
        (b'{"name": "\xff"}', "body: not UTF-8 text"),
        (b'{"seed": ' + b"7" * 5000 + b"}", "body: an integer with over 4300 digits"),
    ],
)
def test_bad_json_is_422_with_where(client, body, line):
    r = client.post("/v1/jobs", content=body, headers=JSON)
    assert r.status_code == 422 and problems(r) == [line]


def test_a_body_that_is_not_json_is_left_to_the_app(client):
    r = client.post("/v1/jobs", content=b'{"name": "a", "name": "b"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 422 and problems(r) != ["name: duplicate key"]


texts = st.text(alphabet='{}[]:,"\\ \n0123456789.-+eEtruefalsnNIfiy\x01\u00e9', max_size=40)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None, database=None)
@given(text=texts | values.map(json.dumps))
def test_the_gate_takes_exactly_what_json_loads_takes(text):
    body = text.encode()
    try:
        json.loads(body)
        loads = True
    except ValueError:
        loads = False
    try:
        check_json(body)
        gate = True
    except BodyProblem as e:
        gate = False
        if "duplicate" in e.msg:
            return  # json.loads keeps the last of a duplicate key
    assert gate == loads, text


@settings(max_examples=400, deadline=None, database=None)
@given(value=values)
def test_the_depth_read_off_the_text_is_the_depth_of_the_value(value):
    from xsharp.api.body_gate import _depth, _text_depth

    for body in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert _text_depth(body) == _depth(value), body
    assert _text_depth(json.dumps(value).encode("utf-16")) is None  # not UTF-8: the value is walked instead


def test_a_duplicate_deep_inside_is_named_by_its_path():
    with pytest.raises(BodyProblem) as caught:
        check_json(b'{"a": {"b": [1, {"c": 1, "d": {}, "c": 2}]}}')  # json.loads would keep c = 2
    assert caught.value.lines() == ["a.b[1].c: duplicate key"]


# --------------------------------------------------------------------------- one error shape
def test_every_4xx_is_a_list_of_lines(api_server, client):
    url, _ = api_server
    other = httpx.post(f"{url}/v1/jobs", json=TINY, headers={"Authorization": "Bearer xs_unknown"})
    assert other.status_code == 401 and problems(other) == ["unknown token"] and other.headers["www-authenticate"] == "Bearer"
    anon = httpx.get(f"{url}/v1/jobs")
    assert anon.status_code == 401 and problems(anon) == ["a bearer token is required"]
    for method, path, status in [
        ("GET", "/v1/jobs/999999", 404),
        ("GET", "/v1/searches/1", 404),  # a job, but no search
        ("POST", "/v1/jobs/1/pause", 409),  # job 1 is STOPPED
        ("GET", "/v1/jobs/1/artifacts/..%2F..%2Fxsharp.db", 400),
        ("GET", "/v1/jobs/1/artifacts/none.npz", 404),
        ("GET", "/v1/jobs/abc", 422),
        ("GET", "/v1/jobs?limit=0", 422),
        ("GET", "/v1/nowhere", 404),
        ("PUT", "/v1/jobs", 405),
    ]:
        r = client.request(method, path)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        assert len(problems(r)) >= 1, (method, path)
    assert problems(client.get("/v1/jobs/999999")) == ["no job 999999"]
    assert problems(client.get("/v1/searches/1")) == ["job 1 is not a search"]


def test_the_job_routes_known_5xx_are_4xx_now(client):
    # Found by fuzzing; the fixes live in jobs.py.
    r = client.get("/v1/jobs/1/artifacts/model.npz%00.txt")
    assert r.status_code in (400, 404), (r.status_code, r.text[:300])
    problems(r)
    r = client.get("/v1/jobs/1/logs", params={"after": 2**62})
    assert r.status_code == 200 and r.content == b"", (r.status_code, r.text[:300])


# --------------------------------------------------------------------------- OpenAPI
def test_the_openapi_documents_every_4xx_with_the_error_body(api_server):
    schema = httpx.get(f"{api_server[0]}/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorOut"]["properties"]["detail"] == {"items": {"type": "string"}, "title": "Detail", "type": "array"}
    assert "HTTPValidationError" not in json.dumps(schema)
    ops = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}

    def errors(method, path):
        responses = ops[(method, path)]["responses"]
        for code, response in responses.items():
            if code.startswith("4"):
                assert response["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}, (method, path, code)
        return sorted(int(code) for code in responses if code.startswith("4"))

    assert errors("POST", "/v1/jobs") == [401, 403, 413, 422]
    assert errors("POST", "/v1/searches") == [401, 403, 413, 422]
    assert errors("GET", "/v1/jobs") == [401, 422]
    assert errors("GET", "/v1/jobs/{job_id}") == [401, 404, 422]
    for action in ("pause", "resume", "stop"):
        assert errors("POST", f"/v1/jobs/{{job_id}}/{action}") == [401, 404, 409, 422]
    assert errors("DELETE", "/v1/jobs/{job_id}") == [401, 404, 409, 422]
    assert errors("GET", "/v1/jobs/{job_id}/artifacts/{path}") == [400, 401, 404, 422]
    assert errors("GET", "/v1/searches/{job_id}") == [401, 404, 422]
    assert errors("GET", "/v1/me") == [401] and errors("GET", "/v1/cluster") == [401]
    assert errors("GET", "/healthz") == [] and errors("GET", "/metrics") == []
    assert "WWW-Authenticate" in ops[("GET", "/v1/me")]["responses"]["401"]["headers"]


def test_the_fast_json_check_agrees_with_the_close_one():
    from xsharp.api.body_gate import BodyProblem, _check_json_closely, check_json

    bodies = [
        b'{"a": 1}',
        b'{"a": 1, "a": 2}',
        b'{"a": {"b": 1, "\\u0062": 2}}',
        b"[" * 64 + b"]" * 64,
        b"[" * 65 + b"]" * 65,
        b"[" * 5000 + b"]" * 5000,
        b'{"a": NaN}',
        b'{"a": 1,}',
        b"\xff",
        b'{"a": "x"} x',
        b"1" * 5000,
        b'[1, 2, {"k": [true, null]}]',
    ]

    def verdict(check, body):
        try:
            check(body, 64)
            return None
        except BodyProblem as e:
            return e.lines()

    for body in bodies:
        assert verdict(check_json, body) == verdict(_check_json_closely, body), body[:40]


def test_a_body_from_someone_the_server_does_not_know_is_never_read(api_server):
    """An unauthenticated megabyte of nested JSON would cost the server most of a second to walk."""
    url, token = api_server
    hostile = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    for headers, why in (
        ({}, "a bearer token is required"),
        ({"Authorization": "Bearer xs_not-a-token"}, "unknown token"),
        ({"Authorization": "Basic eDp5"}, "a bearer token is required"),
    ):
        r = httpx.post(f"{url}/v1/jobs", content=hostile, headers=JSON | headers, timeout=30)
        assert (r.status_code, r.json()["detail"]) == (401, [why])
        assert r.headers["WWW-Authenticate"] == "Bearer"
    r = httpx.post(f"{url}/v1/jobs", content=hostile, headers=JSON | {"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 422 and "nested deeper than" in r.json()["detail"][0]  # a known user's body is checked
