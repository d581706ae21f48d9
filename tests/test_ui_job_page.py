"""The console's job page: Playwright driving Debian's Chromium against a real `xsharp server`
(the session's Ray). A pretraining chart only for a job that pretrains; Delete disabled, with
the reason, in exactly the states the API refuses to delete."""

from __future__ import annotations

import signal

import pytest
from playwright.sync_api import expect

from tests.service import Server, long_spec, short_spec, wait_state
from tests.test_ui import browser, log_in  # noqa: F401 (browser: a fixture, one Chromium a module)


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address):
    s = Server(tmp_path_factory.mktemp("console-job-page"), ray_address, "--checkpoint-seconds", "0.5").start()
    s.tokens = {"alice": s.add_user("alice")}
    yield s
    s.kill(signal.SIGTERM)


def open_finished(page, server, job_id: int) -> None:
    page.goto(f"{server.url}/ui/jobs/{job_id}")
    expect(page.locator("h1 .state")).to_have_text("SUCCEEDED")
    page.wait_for_function("() => +document.querySelector('#loss-chart svg')?.dataset.points > 0", timeout=15_000)  # the metrics are drawn


def test_the_pretraining_chart_is_drawn_only_for_a_job_that_pretrains(server, browser):
    dbn = short_spec("dbn", cpus=1)  # an RBM and an auto-encoder, 3 pretraining epochs each
    no_epochs = short_spec("no-pretraining", cpus=1) | {"pretrain": {"epochs": 0}}
    supervised = short_spec("supervised-only", cpus=1) | {"model": [{"dense": {"units": 16}}, {"softmax": {}}]}
    with server.client(server.tokens["alice"]) as api:
        ids = {spec["name"]: api.post("/v1/jobs", json=spec).json()["id"] for spec in (dbn, no_epochs, supervised)}
        for job_id in ids.values():
            wait_state(api, job_id, "SUCCEEDED")
        assert {r["phase"] for r in api.get(f"/v1/jobs/{ids['dbn']}/metrics").json()} >= {"pretrain", "finetune"}
    page = log_in(browser, server, "alice")
    open_finished(page, server, ids["dbn"])
    chart = page.locator("#pretrain-chart")
    expect(chart.locator("figcaption")).to_have_text("Pretraining: reconstruction error")
    assert int(chart.locator("svg").get_attribute("data-points")) > 0
    expect(chart.locator("svg")).to_contain_text("layer 1 (rbm)")
    expect(page.locator(".charts figure")).to_have_count(3)
    for name in ("no-pretraining", "supervised-only"):
        open_finished(page, server, ids[name])
        expect(page.locator("#pretrain-chart")).to_have_count(0)
        expect(page.locator(".charts figure")).to_have_count(2)  # fine-tuning loss and validation accuracy
        expect(page.locator("#accuracy-chart figcaption")).to_have_text("Validation accuracy")
    page.context.close()


def test_delete_is_disabled_with_the_reason_until_the_job_has_ended(server, browser):
    with server.client(server.tokens["alice"]) as api:
        running = api.post("/v1/jobs", json=long_spec("keeps-training", epochs=20000, cpus=2)).json()["id"]
        wait_state(api, running, "RUNNING")
        queued = api.post("/v1/jobs", json=short_spec("waits-its-turn", cpus=2)).json()["id"]  # the 2 CPUs are taken: it waits
        assert api.get(f"/v1/jobs/{queued}").json()["state"] == "QUEUED"
        for job_id in (running, queued):  # the states the page disables Delete in are ones the API refuses
            assert api.delete(f"/v1/jobs/{job_id}").status_code == 409
        page = log_in(browser, server, "alice")
        page.on("dialog", lambda d: d.accept())
        delete = page.locator("#delete-button")
        for job_id, state in ((queued, "queued"), (running, "running")):
            page.goto(f"{server.url}/ui/jobs/{job_id}")
            expect(page.locator("h1 .state")).to_have_text(state.upper())
            expect(delete).to_be_disabled()
            expect(delete).to_have_attribute("title", f"A {state} job cannot be deleted: stop it first")
        page.click("#pause-button")
        expect(page.locator("h1 .state")).to_have_text("PAUSED", timeout=30_000)
        expect(delete).to_be_disabled()
        expect(delete).to_have_attribute("title", "A paused job cannot be deleted: stop it first")
        assert api.delete(f"/v1/jobs/{running}").status_code == 409
        page.click("#stop-button")
        expect(page.locator("h1 .state")).to_have_text("STOPPED", timeout=30_000)
        expect(delete).to_be_enabled()  # the page turns it on by itself once the job has ended
        expect(delete).to_have_attribute("title", f"Delete job #{running} and its artifacts")
        delete.click()
        page.wait_for_url("**/ui/jobs")
        expect(page.locator("#flash")).to_have_text(f"Job #{running} deleted.")
        assert api.get(f"/v1/jobs/{running}").status_code == 404
        wait_state(api, queued, "SUCCEEDED")  # it ran once the cluster was free
        page.goto(f"{server.url}/ui/jobs/{queued}")
        expect(page.locator("h1 .state")).to_have_text("SUCCEEDED")
        expect(delete).to_be_enabled()
    page.context.close()
