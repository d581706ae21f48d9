"""Fair share over recent usage on a real server whose cluster fits one job at a time: the user
who has used the cluster least recently goes first within a priority, and `/v1/cluster` and
`xsharp cluster status` show each user's decayed usage."""

from __future__ import annotations

import re
import signal

import pytest
from playwright.sync_api import expect

from tests.helpers import run_cli
from tests.service import Server, first_start, long_spec, wait_state
from tests.test_ui import browser, log_in  # noqa: F401 (browser: a fixture)


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address):
    s = Server(tmp_path_factory.mktemp("fair"), ray_address).start()  # the session's Ray: 2 CPUs, one 2-CPU job at a time
    s.tokens = {"admin": s.add_user("root", admin=True), "alice": s.add_user("alice"), "bob": s.add_user("bob")}
    yield s
    s.kill(signal.SIGTERM)


def test_the_user_with_less_recent_usage_goes_first_and_usage_is_shown(server):
    with server.client(server.tokens["alice"]) as alice, server.client(server.tokens["bob"]) as bob, server.client(server.tokens["admin"]) as root:
        first = alice.post("/v1/jobs", json=long_spec("a1", epochs=300)).json()  # 2 CPUs: nothing else fits beside it
        wait_state(alice, first["id"], "RUNNING")
        second = alice.post("/v1/jobs", json=long_spec("a2", epochs=100)).json()
        third = bob.post("/v1/jobs", json=long_spec("b3", epochs=100)).json()  # queued last
        running = root.get("/v1/cluster").json()
        a1, a2 = wait_state(alice, first["id"], "SUCCEEDED"), wait_state(alice, second["id"], "SUCCEEDED")
        b3 = wait_state(bob, third["id"], "SUCCEEDED")
        # once alice's first job ends nothing runs, so running shares are equal (0): her recent usage sends bob first
        assert first_start(a1) < first_start(b3) < first_start(a2), (first_start(a1), first_start(b3), first_start(a2))

        # a run going on counts already; finished runs are charged for the time they held their CPUs
        assert [u["user"] for u in running["usage"]] == ["alice"] and running["usage"][0]["cpu_hours"] > 0
        everyone = root.get("/v1/cluster").json()
        hours = {u["user"]: u["cpu_hours"] for u in everyone["usage"]}
        assert set(hours) == {"alice", "bob"} and hours["alice"] > hours["bob"] > 0
        assert [u["user"] for u in everyone["usage"]] == ["bob", "alice"]  # least first, the order the queue serves them
        assert everyone["usage_half_life_hours"] == 24.0
        held = (a1["finished"] - first_start(a1)) + (a2["finished"] - first_start(a2))  # what alice's two runs held, 2 CPUs each
        assert hours["alice"] == pytest.approx(2 * held / 3600, rel=0.1)
        mine = alice.get("/v1/cluster").json()["usage"]  # a user sees their own usage only
        assert [u["user"] for u in mine] == ["alice"]


def test_the_cli_and_the_console_show_each_users_usage(server, browser, tmp_path):  # noqa: F811
    """After the test above: alice and bob have usage, alice more."""
    env = {"XSHARP_URL": server.url, "XSHARP_TOKEN": server.tokens["admin"], "XSHARP_HOME": str(tmp_path), "COLUMNS": "100"}
    r = run_cli("cluster", "status", env=env)
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index("recent usage") :]
    assert "half-life 24 h" in table.splitlines()[0]
    assert re.findall(r"(alice|bob)\s", table) == ["bob", "alice"]  # least first: the order the queue serves them

    page = log_in(browser, server, "admin")
    page.goto(f"{server.url}/ui/cluster")
    expect(page.locator("#usage tbody tr")).to_have_count(2)
    expect(page.locator("#usage tbody tr").nth(0)).to_have_attribute("data-user", "bob")
    expect(page.locator("#usage tbody tr").nth(1)).to_have_attribute("data-user", "alice")
    alice_hours = float(page.locator('#usage tr[data-user="alice"] td').nth(1).inner_text())
    assert alice_hours > 0
    page.close()
