"""Schemathesis against the live OpenAPI: whatever a client sends, the server never answers 5xx.

The fuzzed server is the real app under a real uvicorn on 127.0.0.1 with a real store, but no
scheduler: the jobs fuzzing submits are queued, never trained."""

from __future__ import annotations

import threading

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings

from tests.service import free_port, wait_for
from xsharp.api import create_app
from xsharp.cluster.store import Store


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("fuzz"))
    token = store.add_user("fuzzer")
    done = store.submit("fuzzer", {"name": "finished"}, 0, 1, 0)  # give ids something to hit
    store.transition(done.id, ["QUEUED"], "STOPPED", "for the fuzzer")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, 20, 0.05, "uvicorn")
    yield url, token
    server.should_exit = True
    thread.join(timeout=10)


def test_no_request_makes_a_server_error(api_server):
    # Schemathesis' own pytest plugin does not run under pytest 9, so drive its strategies directly.
    url, token = api_server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def no_5xx(case):
            response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"

        no_5xx()


def test_the_openapi_documents_every_endpoint(api_server):
    paths = httpx.get(f"{api_server[0]}/openapi.json").json()["paths"]
    for path in ["/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/pause", "/v1/jobs/{job_id}/resume", "/v1/jobs/{job_id}/stop",
                 "/v1/jobs/{job_id}/logs", "/v1/jobs/{job_id}/metrics", "/v1/jobs/{job_id}/artifacts/{path}", "/v1/cluster", "/healthz", "/metrics"]:
        assert path in paths, path
    assert httpx.get(f"{api_server[0]}/docs").status_code == 200
