"""Schemathesis against the live OpenAPI: whatever a client sends, alone or in a sequence, the
server never answers 5xx, and every answer is one the OpenAPI documents (status, content type,
body schema).

The fuzzed server is the real app under a real uvicorn on 127.0.0.1 with a real store, but no
scheduler: the jobs fuzzing submits are queued, never trained.

A longer pass, outside the suite: ``python -m tests.test_api_fuzz [EXAMPLES]`` prints what it sent,
what came back and every failure with its request."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from tests.service import live_app
from xsharp.cluster.store import Store

TIMEOUT = 30  # seconds: no answer takes a second; a hang fails the run instead of stalling it
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]
SEQUENCES = [*CONFORMANCE, use_after_free, ensure_resource_availability]  # a deleted job stays gone; a created one can be read


@contextmanager
def live_api(home: Path):
    """The app on a free loopback port, with one user (its token yielded) and one finished job (id 1)."""
    store = Store(home)
    token = store.add_user("fuzzer")
    done = store.submit("fuzzer", {"name": "finished"}, 0, 1, 0)  # give ids something to hit
    store.transition(done.id, ["QUEUED"], "STOPPED", "for the fuzzer")
    with live_app(store) as url:
        yield url, token


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    with live_api(tmp_path_factory.mktemp("fuzz")) as served:
        yield served


@dataclass
class Failed:
    check: str
    method: str
    path: str
    status: int
    request: str  # the query and body, shortened
    answer: str  # the error body's first line
    times: int = 1

    def __str__(self) -> str:
        return f"{self.check} x{self.times}: {self.method} {self.path} -> {self.status} {self.answer}\n      {self.request}"


@dataclass
class Tally:
    """What a fuzzing run sent and got back; checks that fail are counted, not raised, so a run
    reports every distinct failure instead of stopping (and shrinking) at the first."""

    cases: Counter = field(default_factory=Counter)  # by mode: positive, negative, stateful
    statuses: Counter = field(default_factory=Counter)  # by class: 2xx, 4xx, 5xx
    failures: dict[tuple, Failed] = field(default_factory=dict)  # one per check, operation, status and reason
    operations: set = field(default_factory=set)

    def validate(self, case, response, checks, mode: str, recorder=None, **transport) -> None:
        self.cases[mode] += 1
        self.operations.add(case.operation.label)
        self.statuses[f"{response.status_code // 100}xx"] += 1
        try:
            case.validate_response(response, checks=checks, transport_kwargs=transport or None, recorder=recorder)
        except FailureGroup as group:
            answer = _first_line(response)
            for failure in group.exceptions:
                check = (failure.checks or (failure.kind_title,))[0]
                key = (check, case.operation.label, response.status_code, answer.split(", got ")[0])
                if key in self.failures:
                    self.failures[key].times += 1
                else:
                    self.failures[key] = Failed(check, case.method, case.formatted_path, response.status_code, _request(case), answer)

    def report(self) -> str:
        lines = [
            f"{len(self.operations)} operations, {sum(self.cases.values())} cases ({', '.join(f'{k} {v}' for k, v in sorted(self.cases.items()))})",
            "responses: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())),
            "failures by check: " + (", ".join(f"{k} {v}" for k, v in sorted(Counter(f.check for f in self.failures.values()).items())) or "none"),
        ]
        return "\n".join(lines + [f"  {f}" for f in self.failures.values()])


def _first_line(response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:120]
    return str(detail[0] if isinstance(detail, list) and detail else detail)[:200]


def _request(case) -> str:
    parts = [f"query={case.query}"] if case.query else []
    if not isinstance(case.body, NotSet):
        parts.append("body=" + json.dumps(case.body, default=repr)[:300])
    return " ".join(parts)


def load_schema(url: str):
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.hook("filter_query")(_not_following)
    return schema


def _not_following(context, query) -> bool:
    """A followed log streams until its job ends, and the fuzzer's jobs never run: leave follow=true out."""
    follows = str((query or {}).get("follow")).lower() in ("1", "on", "t", "true", "y", "yes")  # FastAPI's true
    return not (context.operation.path.endswith("/logs") and follows)


def fuzz_operations(url: str, token: str, tally: Tally, examples: int, negative_checks: list, positive_checks: list) -> None:
    """Each operation on its own: schema-valid data, then data the schema forbids."""
    schema = load_schema(url)
    call = {"base_url": url, "headers": {"Authorization": f"Bearer {token}"}, "timeout": TIMEOUT}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, checks in ((GenerationMode.POSITIVE, positive_checks), (GenerationMode.NEGATIVE, negative_checks)):
            if mode is GenerationMode.NEGATIVE and not (any(operation.iter_parameters()) or operation.body):
                continue  # nothing the schema constrains: no invalid request to make

            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def send(case):
                tally.validate(case, case.call(**call), checks, mode.value, **call)

            send()


def fuzz_sequences(url: str, token: str, tally: Tally, scenarios: int, checks: list) -> None:
    """Sequences along the links schemathesis infers (submit -> pause -> resume -> delete -> get ...),
    with schema-valid and invalid data mixed."""
    schema = load_schema(url)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    call = {"base_url": url, "headers": {"Authorization": f"Bearer {token}"}, "timeout": TIMEOUT}
    ran = 0  # scenarios finished

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return call

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            tally.validate(case, response, checks, "stateful", recorder=self.recorder, **kwargs)  # the recorder: earlier steps, for use_after_free

        def teardown(self):
            nonlocal ran
            ran += 1
            super().teardown()

    while ran < scenarios:
        before = ran
        budget = settings(max_examples=scenarios - ran, stateful_step_count=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        try:
            Workflow.run(settings=budget)
        except Flaky:  # the server's state changed what a rule could draw, and Hypothesis noticed: go on afresh, as schemathesis' own runner does
            if ran == before:
                raise


def test_no_request_makes_a_server_error_or_an_undocumented_answer(api_server):
    # Schemathesis' own pytest plugin does not run under pytest 9, so drive its strategies directly.
    url, token = api_server
    tally = Tally()
    fuzz_operations(url, token, tally, examples=50, negative_checks=CONFORMANCE, positive_checks=CONFORMANCE)
    assert len(tally.operations) >= 20 and tally.cases["negative"] > 500
    assert tally.statuses["5xx"] == 0 and not tally.failures, tally.report()


def test_no_sequence_makes_a_server_error_or_an_undocumented_answer(api_server):
    url, token = api_server
    tally = Tally()
    fuzz_sequences(url, token, tally, scenarios=100, checks=SEQUENCES)
    assert tally.cases["stateful"] > 300
    assert tally.statuses["5xx"] == 0 and not tally.failures, tally.report()


def test_the_openapi_documents_every_endpoint(api_server):
    paths = httpx.get(f"{api_server[0]}/openapi.json").json()["paths"]
    for path in [
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/pause",
        "/v1/jobs/{job_id}/resume",
        "/v1/jobs/{job_id}/stop",
        "/v1/jobs/{job_id}/logs",
        "/v1/jobs/{job_id}/metrics",
        "/v1/jobs/{job_id}/artifacts/{path}",
        "/v1/cluster",
        "/healthz",
        "/metrics",
    ]:
        assert path in paths, path
    assert httpx.get(f"{api_server[0]}/docs").status_code == 200


if __name__ == "__main__":  # the longer pass: every check, schema-valid data refused included
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as home, live_api(Path(home)) as (url, token):
        tally, started = Tally(), time.time()
        fuzz_operations(
            url, token, tally, examples, negative_checks=[*CONFORMANCE, negative_data_rejection], positive_checks=[*CONFORMANCE, positive_data_acceptance]
        )
        fuzz_sequences(url, token, tally, examples, checks=SEQUENCES)
        print(tally.report())
        print(f"{time.time() - started:.0f} s")
