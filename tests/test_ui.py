"""The web console: Playwright driving Debian's Chromium against a real `xsharp server` on
127.0.0.1 (the session's Ray), and the read-only endpoints the console added to the API.

GPU figures come from the real exporter serving NVML's stand-in (tests/fake_nvml.py; this
machine has no GPU). Set XSHARP_SCREENSHOTS=docs to write each page's screenshot into docs/.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect, sync_playwright

from tests.fake_nvml import FakeNVML, h100
from tests.helpers import ROOT, run_cli
from tests.service import Server, long_spec, short_spec, wait_state
from xsharp.algos.modules import MODULES
from xsharp.api import create_app
from xsharp.appliance import HealthConfig, NodeCollector
from xsharp.appliance.exporter import serve
from xsharp.cluster.store import Store
from xsharp.searchspec import is_search
from xsharp.spec import json_schema, parse_spec

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/system-deps.sh); Playwright downloads no browser
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GRAFANA = "http://grafana.test:3000"
CONSOLE_ENDPOINTS = ["/v1/me", "/v1/modules", "/v1/recipes", "/v1/spec/schema", "/v1/cluster/gpus", "/v1/cluster/dashboards"]


@pytest.fixture(scope="module")
def exporter():
    nvml = FakeNVML([h100(temp=41, util=73), h100(temp=67, util=12, fb_used=60 * 1024**3)])
    httpd, thread = serve(NodeCollector(nvml, hostname="gpu-node-1", health=HealthConfig(expected_gpus=2, min_free_disk_percent=0.0)), host="127.0.0.1", port=0)
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address, exporter):
    s = Server(tmp_path_factory.mktemp("console"), ray_address, "--checkpoint-seconds", "0.5", "--exporter-url", exporter, "--grafana-url", GRAFANA).start()
    s.tokens = {"alice": s.add_user("alice"), "bob": s.add_user("bob"), "root": s.add_user("root", admin=True)}
    yield s
    s.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def log_in(browser, server, user: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.goto(f"{server.url}/ui/login")
    page.fill("#token", server.tokens[user])
    page.click("#login-button")
    page.wait_for_url("**/ui/jobs")
    return page


def shot(page: Page, name: str, tmp_path: Path, full_page: bool = True) -> None:
    folder = Path(os.environ["XSHARP_SCREENSHOTS"]) if os.environ.get("XSHARP_SCREENSHOTS") else tmp_path
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.activeElement?.blur()")  # else Chromium scrolls a focused input back into view after a full-page shot, under the next click
    page.screenshot(path=str(folder / f"console-{name}.png"), full_page=full_page)


def points(page: Page) -> int:
    return int(page.get_attribute("#loss-chart svg", "data-points") or 0)


# --------------------------------------------------------------------------- the API the console added
def test_console_endpoints_need_a_token_and_describe_modules_recipes_gpus_and_dashboards(server):
    with server.client(None) as anon:
        for path in CONSOLE_ENDPOINTS:
            assert anon.get(path).status_code == 401, path
        shell = anon.get("/ui/jobs")  # the page itself is a shell that holds no data
        assert shell.status_code == 200 and "console.js" in shell.text and "script-src 'self'" in shell.headers["content-security-policy"]
        assert anon.get("/ui/static/console.js").status_code == 200
    with server.client(server.tokens["alice"]) as api:
        assert api.get("/v1/me").json() == {"name": "alice", "admin": False}
        modules = {m["kind"]: m for m in api.get("/v1/modules").json()}
        assert set(modules) == set(MODULES)
        assert modules["rbm"]["pretrainable"] and modules["autoencoder"]["pretrainable"] and not modules["dense"]["pretrainable"]
        assert modules["rbm"]["options"]["required"] == ["hidden"] and modules["rbm"]["summary"] == MODULES["rbm"].summary
        recipes = {r["name"]: r for r in api.get("/v1/recipes").json()}
        assert {p.stem for p in (ROOT / "examples").glob("*.yaml")} == set(recipes)
        for r in recipes.values():
            assert r["error"] is None and r["description"] and r["yaml"].startswith("#")
            if r["kind"] == "job":
                assert parse_spec(r["spec"]).name == r["name"]
            else:  # a search: ranges and grids, run by the CLI
                assert r["kind"] == "search" and is_search(r["spec"])
        assert recipes["digits-dbn"]["kind"] == "job" and recipes["digits-search"]["kind"] == "search"
        schema = api.get("/v1/spec/schema").json()
        assert schema["jobspec"] == json_schema() and "digits" in schema["datasets"]
        gpus = api.get("/v1/cluster/gpus").json()
        assert gpus["exporters"] == 1 and gpus["errors"] == []
        assert [(g["hostname"], g["gpu"], g["temperature"], g["utilization"]) for g in gpus["gpus"]] == [
            ("gpu-node-1", "0", 41, 73),
            ("gpu-node-1", "1", 67, 12),
        ]
        assert (
            gpus["gpus"][1]["memory_used"] == 60 * 1024 and gpus["gpus"][1]["memory_total"] == 80 * 1024 and gpus["gpus"][0]["model"] == "NVIDIA H100 80GB HBM3"
        )
        boards = {b["uid"]: b["url"] for b in api.get("/v1/cluster/dashboards").json()}
        assert boards["xsharp-training"] == f"{GRAFANA}/d/xsharp-training" and "xsharp-cluster-gpus" in boards


def test_without_monitoring_options_gpus_and_dashboards_are_empty_and_a_dead_exporter_is_reported(tmp_path):
    store = Store(tmp_path)
    token = store.add_user("carol")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(store)) as client:
        assert client.get("/v1/cluster/gpus", headers=auth).json() == {"exporters": 0, "gpus": [], "errors": []}
        assert client.get("/v1/cluster/dashboards", headers=auth).json() == []
    with TestClient(create_app(store, exporter_urls=["http://127.0.0.1:9/metrics"], recipes_dir=tmp_path)) as client:
        r = client.get("/v1/cluster/gpus", headers=auth)
        assert r.status_code == 200 and r.json()["gpus"] == [] and r.json()["errors"][0].startswith("http://127.0.0.1:9/metrics: ConnectError")
        assert client.get("/v1/recipes", headers=auth).json() == []
    with pytest.raises(ValueError, match="not a URL"):
        create_app(store, grafana_url="http://:80")
    r = run_cli("server", "--home", str(tmp_path), "--exporter-url", "http://:9400")
    assert r.returncode == 2 and "not a URL or HOST:PORT: 'http://:9400'" in r.stderr


# --------------------------------------------------------------------------- the console in a browser
def test_login_refuses_a_bad_token_then_lands_on_the_jobs_page(server, browser, tmp_path):
    page = browser.new_context(viewport={"width": 1280, "height": 700}).new_page()
    page.goto(f"{server.url}/ui/cluster")
    page.wait_for_url(re.compile(r"/ui/login\?next=%2Fui%2Fcluster$"))  # no token yet
    shot(page, "login", tmp_path, full_page=False)
    page.fill("#token", "xs_not-a-token")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_have_text("401: unknown token")
    page.fill("#token", server.tokens["alice"])
    page.press("#token", "Enter")
    page.wait_for_url("**/ui/cluster")  # back where it was going
    expect(page.locator("#who")).to_have_text("alice")
    page.context.close()


def test_a_bad_field_shows_the_servers_error_next_to_that_field(server, browser, tmp_path):
    page = log_in(browser, server, "alice")
    page.goto(f"{server.url}/ui/submit")
    page.fill('[data-path="model[0].rbm.hidden"]', "32")
    page.select_option("#module-kind", "rbm")
    page.click("#add-module")  # appended after softmax: move it above the head
    page.locator('.module[data-field="model[2]"] button[title="move up"]').click()
    page.fill('[data-path="model[1].rbm.hidden"]', "-3")
    page.fill('[data-path="train.learning_rate"]', "0")
    expect(page.locator("#yaml")).to_contain_text("model:\n  - rbm: {hidden: 32}\n  - rbm: {hidden: -3}\n  - softmax: {}")
    page.click("#submit-button")
    expect(page.locator('[data-field="model[1].rbm.hidden"] .field-error')).to_have_text("must be > 0, got -3")
    expect(page.locator('[data-field="train.learning_rate"] .field-error')).to_have_text("must be > 0.0, got 0")
    expect(page.locator('[data-field="model[0].rbm.hidden"] .field-error')).to_have_text("")
    expect(page.locator("#submit-errors")).to_contain_text("2 problems, marked on the form")
    page.fill('[data-path="model[1].rbm.hidden"]', "")  # a required option left out: 'is required', on the module's field
    page.click("#submit-button")
    expect(page.locator('[data-field="model[1].rbm.hidden"] .field-error')).to_have_text("is required")
    page.fill('[data-path="model[1].rbm.hidden"]', "-3")
    page.click("#submit-button")
    expect(page.locator('[data-field="model[1].rbm.hidden"] .field-error')).to_have_text("must be > 0, got -3")
    shot(page, "submit", tmp_path)
    page.context.close()


def test_submit_a_job_watch_its_curve_grow_pause_resume_stop_and_delete(server, browser, tmp_path):
    page = log_in(browser, server, "alice")
    polled = []
    page.on("request", lambda r: polled.append(r.url) if re.search(r"/v1/jobs/\d+/(metrics|logs)\?", r.url) else None)
    page.goto(f"{server.url}/ui/submit")
    page.select_option("#recipe", "digits-dbn")  # a recipe fills the form, then shrink it to a quick local run
    expect(page.locator('[data-path="model[1].rbm.hidden"]')).to_have_value("128")
    page.locator('.module[data-field="model[1]"] button[title="remove"]').click()
    for path, value in {
        "name": "console-run",
        "data.limit": "1500",
        "model[0].rbm.hidden": "128",
        "pretrain.epochs": "8",
        "pretrain.batch_size": "10",
        "train.epochs": "5000",
        "train.batch_size": "10",
        "resources.workers": "1",
        "resources.cpus_per_worker": "2",
        "priority": "7",
    }.items():
        page.fill(f'[data-path="{path}"]', value)
    page.select_option('[data-path="mode"]', "local")
    expect(page.locator("#yaml")).to_contain_text("model:\n  - rbm: {hidden: 128}\n  - softmax: {}")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"/ui/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#flash")).to_have_text(f"Job #{job_id} submitted.")
    state = page.locator('[data-fact="state"] .state')
    expect(state).to_have_text("RUNNING", timeout=30_000)

    page.wait_for_function("() => +(document.querySelector('#loss-chart svg')?.dataset.points || 0) > 0", timeout=30_000)
    first = points(page)
    page.wait_for_function(f"() => +document.querySelector('#loss-chart svg').dataset.points > {first}", timeout=15_000)  # the curve grows while it trains
    expect(page.locator('[data-fact="eta"]')).to_have_text(re.compile(r"^\d+[smhd]"))
    expect(page.locator("#grafana-link")).to_have_attribute("href", f"{GRAFANA}/d/xsharp-training?var-job_id={job_id}")
    expect(page.locator("#log")).to_contain_text("fine-tune epoch")
    after = {kind: [int(a) for u in polled if f"/{kind}?" in u for a in re.findall(r"after=(\d+)", u)] for kind in ("metrics", "logs")}
    assert after["metrics"][0] == after["logs"][0] == 0 and after["metrics"][-1] > 0 and after["logs"][-1] > 0  # later polls ask only for what is new
    assert after["metrics"] == sorted(after["metrics"]) and after["logs"] == sorted(after["logs"])
    shot(page, "job", tmp_path)

    page.goto(f"{server.url}/ui/jobs")
    row = page.locator(f'#active-jobs tr[data-job="{job_id}"]')
    expect(row.locator("td").nth(2)).to_have_text("alice")
    expect(row.locator(".state")).to_have_text("RUNNING")
    expect(row.locator("td").nth(4)).to_have_text("7")
    expect(row.locator(".eta")).to_have_text(re.compile(r"^\d+[smhd]"))
    expect(row.locator(".progress-cell")).to_contain_text("fine-tune · epoch")

    page.goto(f"{server.url}/ui/jobs/{job_id}")
    page.on("dialog", lambda d: d.accept())
    expect(page.locator("#delete-button")).to_be_disabled()  # the API refuses to delete a running job; the page says why
    expect(page.locator("#delete-button")).to_have_attribute("title", "A running job cannot be deleted: stop it first")
    page.click("#pause-button")
    expect(state).to_have_text("PAUSED", timeout=30_000)
    expect(page.locator("#pause-button")).to_be_disabled()
    expect(page.locator("#artifacts")).to_contain_text("none yet")
    paused = points(page)
    page.click("#resume-button")
    expect(state).to_have_text("RUNNING", timeout=30_000)
    page.wait_for_function(f"() => +document.querySelector('#loss-chart svg').dataset.points > {paused}", timeout=20_000)  # it goes on from its checkpoint
    expect(page.locator(".events")).to_contain_text("from checkpoint")
    page.click("#stop-button")
    expect(state).to_have_text("STOPPED", timeout=30_000)
    expect(page.locator("#resume-button")).to_be_disabled()
    page.click("#delete-button")
    page.wait_for_url("**/ui/jobs")
    expect(page.locator("#flash")).to_have_text(f"Job #{job_id} deleted.")
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_have_count(0)
    page.context.close()


def test_cluster_page_shows_nodes_free_resources_queue_gpus_and_grafana_links(server, browser, tmp_path):
    with server.client(server.tokens["alice"]) as alice, server.client(server.tokens["bob"]) as bob:
        running = alice.post("/v1/jobs", json=long_spec("fills-the-cluster", epochs=20000, priority=5)).json()  # above the waiting job: no preemption
        wait_state(alice, running["id"], "RUNNING")
        waiting = bob.post("/v1/jobs", json=short_spec("waits-its-turn", cpus=1, priority=3)).json()
        page = log_in(browser, server, "alice")
        page.goto(f"{server.url}/ui/cluster")
        expect(page.locator("#nodes tbody tr")).to_have_count(1)
        cpu = page.locator('#resources tr[data-resource="CPU"] td')
        expect(cpu.nth(0)).to_have_text("2")  # used
        expect(cpu.nth(1)).to_have_text("0")  # free
        expect(page.locator("#queue tbody tr")).to_contain_text("The queue is empty.")  # bob's waiting job is his alone to see
        expect(page.locator("#nodes tbody tr td").nth(0)).to_have_text("(admins only)")
        gpus = page.locator("#gpu-table tbody tr")
        expect(gpus).to_have_count(2)
        expect(gpus.nth(0)).to_contain_text("NVIDIA H100 80GB HBM3")
        expect(gpus.nth(0).locator(".util")).to_have_text("73%")
        expect(gpus.nth(1).locator(".temp")).to_have_text("67 °C")
        expect(gpus.nth(1).locator(".mem")).to_have_text("60.0 GiB / 80.0 GiB")
        expect(page.locator("#dashboards a", has_text="Cluster GPUs")).to_have_attribute("href", f"{GRAFANA}/d/xsharp-cluster-gpus")
        shot(page, "cluster", tmp_path)
        page.context.close()
        page = log_in(browser, server, "root")  # an admin sees everyone's jobs, in queue order
        expect(page.locator("#who")).to_have_text("root (admin)")
        page.goto(f"{server.url}/ui/cluster")
        expect(page.locator("#queue tbody tr")).to_contain_text(f"#{waiting['id']} waits-its-turn")
        page.goto(f"{server.url}/ui/jobs")
        expect(page.locator(f'#active-jobs tr[data-job="{waiting["id"]}"]')).to_contain_text("#1 in queue")
        expect(page.locator("#active-jobs tbody tr").nth(0)).to_have_attribute("data-job", str(running["id"]))
        expect(page.locator(f'#active-jobs tr[data-job="{running["id"]}"] .eta')).to_have_text(re.compile(r"^\d+[smhd]"))
        shot(page, "jobs", tmp_path, full_page=False)
        page.context.close()
        assert bob.post(f"/v1/jobs/{waiting['id']}/stop").status_code == 202
        assert alice.post(f"/v1/jobs/{running['id']}/stop").status_code == 202
        wait_state(alice, running["id"], "STOPPED")


def test_another_users_job_is_refused(server, browser):
    with server.client(server.tokens["alice"]) as alice:
        job = alice.post("/v1/jobs", json=short_spec("alices-own", cpus=1)).json()
    page = log_in(browser, server, "bob")
    expect(page.locator("#jobs-summary")).to_contain_text("in all")
    expect(page.locator("#active-jobs, #finished-jobs").locator(f'tr[data-job="{job["id"]}"]')).to_have_count(0)
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    expect(page.locator("#job-error")).to_have_text(f"404: no job {job['id']}")
    expect(page.locator("#pause-button")).to_have_count(0)
    r = page.evaluate(
        f"() => fetch('/v1/jobs/{job['id']}/pause', {{method: 'POST', headers: {{Authorization: 'Bearer ' + sessionStorage.getItem('xsharp.token')}}}}).then(r => r.status)"
    )
    assert r == 404  # the browser's own token gets no further than the page shows
    page.context.close()


def test_a_search_shows_its_trials_and_metric_plot_and_a_search_recipe_fills_the_form(server, browser, tmp_path):
    raw = short_spec("lr-search", cpus=1)
    raw["train"] = raw["train"] | {"learning_rate": {"grid": [0.1, 0.3]}}
    raw["search"] = {"strategy": "grid", "max_parallel": 2}
    with server.client(server.tokens["alice"]) as alice:
        search = alice.post("/v1/searches", json=raw).json()
        wait_state(alice, search["id"], "SUCCEEDED", 120)
        page = log_in(browser, server, "alice")
        page.goto(f"{server.url}/ui/searches")
        row = page.locator(f'#searches tr[data-job="{search["id"]}"]')
        expect(row.locator(".trials")).to_have_text("2")
        row.locator("a", has_text="#").click()
        page.wait_for_url(f"**/ui/jobs/{search['id']}")  # a search's job page shows the same trial table
        trials = page.locator("#trial-table tbody tr")
        expect(trials).to_have_count(2)
        expect(page.locator("#trial-table thead")).to_contain_text("train.learning_rate")
        expect(page.locator("#trial-table tr.best")).to_have_count(1)
        expect(page.locator("#trial-metric svg")).to_have_attribute("data-points", "2")  # accuracy by learning rate
        expect(page.locator("#trial-curves svg")).to_have_attribute("data-points", "40")  # 2 trials x 20 epochs
        expect(page.locator("#search-png img")).to_be_visible()  # the server's plot, fetched with the token
        shot(page, "search-job", tmp_path)

        page.goto(f"{server.url}/ui/submit")
        page.select_option("#recipe", "digits-search")  # a search recipe fills the form, grids and all
        expect(page.locator("#yaml")).to_contain_text("  - rbm: {hidden: {grid: [32, 128, 512]}}")
        expect(page.locator("#yaml")).to_contain_text("learning_rate: {grid: [0.01, 0.05, 0.25]}")
        expect(page.locator('[data-field="model[0].rbm.hidden"] .hp-grid')).to_have_value("32, 128, 512")
        expect(page.locator('section[data-field="search"]')).to_be_visible()
        expect(page.locator("#submit-button")).to_have_text("Submit search")
        page.click("#submit-button")
        page.wait_for_url(re.compile(r"/ui/searches/\d+$"))
        job_id = int(page.url.rsplit("/", 1)[1])
        expect(page.locator("#flash")).to_have_text(f"Search #{job_id} submitted.")
        submitted = alice.get(f"/v1/jobs/{job_id}").json()["spec"]
        assert submitted["search"]["strategy"] == "grid" and submitted["model"][0]["rbm"]["hidden"] == {"grid": [32, 128, 512]}
        assert alice.post(f"/v1/jobs/{job_id}/stop").status_code in (202, 409)  # 409: it may already be done
        wait_state(alice, job_id, ["STOPPED", "SUCCEEDED"])
        page.context.close()


def test_a_search_built_on_the_form_with_a_range_and_auto_fills_its_trial_table_while_it_runs(server, browser, tmp_path):
    page = log_in(browser, server, "alice")
    page.goto(f"{server.url}/ui/submit")
    kinds = page.locator("#module-kind option")
    expect(kinds).to_have_count(len(MODULES))
    assert sorted(kinds.evaluate_all("els => els.map(e => e.value)")) == sorted(MODULES)  # the server's module registry
    hidden, lr = page.locator('[data-field="model[0].rbm.hidden"]'), page.locator('[data-field="train.learning_rate"]')
    expect(lr.locator(".hp-mode option")).to_have_text(["fixed", "range", "grid", "auto"])
    expect(page.locator('[data-field="train.eps"] .hp-mode option')).to_have_text(["fixed", "range", "grid"])  # no prior for eps: no auto
    expect(page.locator('section[data-field="search"]')).to_be_hidden()
    for path, value in {
        "name": "form-search",
        "data.limit": "300",
        "pretrain.epochs": "2",
        "pretrain.batch_size": "20",
        "train.epochs": "4000",
        "train.batch_size": "20",
        "resources.cpus_per_worker": "1",
    }.items():
        page.fill(f'[data-path="{path}"]', value)
    page.select_option('[data-path="mode"]', "local")
    hidden.locator(".hp-mode").select_option("range")
    for role, value in {"low": "32", "high": "16", "step": "16"}.items():
        hidden.locator(f'[data-hp="{role}"]').fill(value)
    lr.locator(".hp-mode").select_option("auto")
    expect(lr.locator(".hp-auto")).to_have_text("log-uniform 0.001 to 0.5")
    expect(page.locator('section[data-field="search"]')).to_be_visible()  # a field that varies makes it a search
    expect(page.locator("#submit-button")).to_have_text("Submit search")
    momentum = page.locator('[data-field="pretrain.momentum"]')
    momentum.locator(".hp-mode").select_option("grid")
    momentum.locator(".hp-grid").fill("0.5, 1.5")
    expect(page.locator("#yaml")).to_contain_text("  - rbm: {hidden: {range: [32, 16], step: 16}}")
    expect(page.locator("#yaml")).to_contain_text("  momentum: {grid: [0.5, 1.5]}")
    page.click("#submit-button")  # low above high: the server's message lands on the field
    expect(hidden.locator(".field-error")).to_have_text("range: must be [low, high] numbers with low < high, got [32, 16]")
    expect(page.locator("#submit-errors")).to_contain_text("1 problem, marked on the form")
    hidden.locator('[data-hp="low"]').fill("16")
    hidden.locator('[data-hp="high"]').fill("32")
    expect(hidden.locator(".field-error")).to_have_text("")
    page.click("#submit-button")  # a grid value no trial can take: the trial's message, on that field
    expect(momentum.locator(".field-error")).to_have_text(re.compile(r"^trial \d+ \(.*pretrain\.momentum=1\.5.*\): must be < 1\.0, got 1\.5$"))
    momentum.locator(".hp-mode").select_option("fixed")
    page.select_option('[data-path="search.strategy"]', "random")
    page.fill('[data-path="search.samples"]', "3")
    page.fill('[data-path="search.max_parallel"]', "2")
    page.fill('[data-path="search.seed"]', "1")
    yaml_text = page.locator("#yaml").inner_text()
    for line in [
        "  - rbm: {hidden: {range: [16, 32], step: 16}}",
        "  learning_rate: auto",
        "search:\n  strategy: random\n  samples: 3\n  max_parallel: 2\n  seed: 1",
    ]:
        assert line in yaml_text
    shot(page, "submit-search", tmp_path)
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"/ui/searches/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#flash")).to_have_text(f"Search #{job_id} submitted.")
    with server.client(server.tokens["alice"]) as alice:
        assert alice.get(f"/v1/jobs/{job_id}").json()["spec"] == yaml.safe_load(yaml_text)  # the YAML shown is what was sent

        live = page.locator('#trial-table[data-final="false"]')
        expect(live.locator("tbody tr")).to_have_count(3, timeout=60_000)  # the table so far, while the search runs
        page.wait_for_function(
            "() => document.querySelector('#trial-table')?.dataset.final === 'false'"  # curves drawn while it runs
            " && document.querySelector('#trial-summary').textContent.endsWith('live')"
            " && +(document.querySelector('#trial-curves svg')?.dataset.points || 0) > 0",
            timeout=60_000,
        )
        expect(page.locator("#trial-table thead")).to_contain_text("model[0].rbm.hidden")
        shot(page, "search-live", tmp_path)

        final = page.locator('#trial-table[data-final="true"]')
        expect(final).to_have_count(1, timeout=120_000)
        expect(final.locator('tbody tr[data-state="SUCCEEDED"]')).to_have_count(3)
        result = wait_state(alice, job_id, "SUCCEEDED")["result"]
        expect(final.locator("tr.best")).to_have_attribute("data-trial", str(result["best_trial"]))
        expect(page.locator("#trial-summary")).to_contain_text(f"best: trial {result['best_trial']}")
        expect(page.locator("#search-png img")).to_be_visible()
        expect(page.locator(f'#searches tr[data-job="{job_id}"] .trials')).to_have_text("3")
        for t in alice.get(f"/v1/searches/{job_id}").json()["trials"]:
            assert t["params"]["model[0].rbm.hidden"] in (16, 32) and 0.001 <= t["params"]["train.learning_rate"] <= 0.5
        shot(page, "search", tmp_path)
    page.context.close()
