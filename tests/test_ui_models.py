"""The console's Models page: Playwright driving Debian's Chromium against the real app under
uvicorn on 127.0.0.1, whose registry holds two models really trained by `xsharp run` (digits, and
a WAV folder of tones), registered as a finished job's model is. A model's page sends a real PNG
and a real WAV through its "try it" box and shows the server's top 5, or the server's error."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import httpx
import numpy as np
import onnx
import pytest
from playwright.sync_api import expect

from tests.service import live_app
from tests.test_predict import expected, png_bytes, register, tone, train_models, wav_bytes, write_data
from tests.test_ui import browser, log_in, shot  # noqa: F401 (browser: a fixture, one Chromium a module)
from xsharp.algos import Model
from xsharp.cluster.store import Store

TRAINED = ("digits", "tones")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-models")
    specs = write_data(root)
    files = train_models(root, specs, TRAINED)
    store = Store(root / "home")
    tokens = {"alice": store.add_user("alice"), "bob": store.add_user("bob")}
    ids = {name: register(store, "alice", specs[name], files[name]) for name in TRAINED}
    with live_app(store) as url:
        yield SimpleNamespace(
            url=url, tokens=tokens, ids=ids, store=store, specs=specs, files=files, root=root, models={n: Model.load(f) for n, f in files.items()}
        )


def open_model(page, served, name: str) -> None:
    page.goto(f"{served.url}/ui/models")
    page.locator(f'#models tr[data-model="{served.ids[name]}"] td.version').click()  # a click anywhere on the row
    page.wait_for_url(f"**/ui/models/{served.ids[name]}")


def test_the_models_page_lists_the_models_and_a_digit_png_gets_the_models_top_5(served, browser, tmp_path):
    from xsharp.algos import datasets

    page = log_in(browser, served, "alice")
    page.click("nav a[data-nav=models]")
    page.wait_for_url("**/ui/models")
    expect(page.locator("nav a[data-nav=models]")).to_have_class("active")
    expect(page.locator("#models tbody tr")).to_have_count(2)
    for name in TRAINED:
        m = served.store.model(served.ids[name])
        row = page.locator(f'#models tr[data-model="{m.id}"]')
        expect(row.locator("a.model-link")).to_have_text(name)
        expect(row.locator("td.version")).to_have_text("v1")
        expect(row.locator("a.job-link")).to_have_attribute("href", f"/ui/jobs/{m.job_id}")
        expect(row.locator("td.dataset")).to_have_text("digits" if name == "digits" else served.specs[name]["data"]["path"])
    open_model(page, served, "digits")
    expect(page.locator("nav a[data-nav=models]")).to_have_class("active")
    m = served.store.model(served.ids["digits"])
    expect(page.locator("h1")).to_contain_text(f"digits v1 · #{m.id}")
    expect(page.locator('#lineage [data-fact="job"] a')).to_have_attribute("href", f"/ui/jobs/{m.job_id}")
    expect(page.locator('#lineage [data-fact="user"]')).to_have_text("alice")
    expect(page.locator('#lineage [data-fact="dataset"]')).to_have_text("digits")
    expect(page.locator("#model-spec")).to_contain_text("name: digits")
    expect(page.locator("#model-spec")).to_contain_text("dataset: digits")
    expect(page.locator("#try-it")).to_have_attribute("data-kind", "image")
    expect(page.locator("#try-file")).to_have_attribute("accept", re.compile(r"image/png"))

    pixels = np.rint(datasets.load("digits").x_test[7] * 255)
    png = tmp_path / "seven.png"
    png.write_bytes(png_bytes(pixels))
    proba = expected(served.models["digits"], (pixels / 255.0).astype(np.float32)[None])[0]  # the model's own predict_proba
    order = np.argsort(-proba, kind="stable")[:5]
    classes = served.models["digits"].classes
    page.set_input_files("#try-file", str(png))
    top = page.locator("#try-result ol.top-classes li")
    expect(top).to_have_count(5)
    assert top.locator(".label").all_inner_texts() == [classes[c] for c in order]
    shown = top.locator(".prob").all_inner_texts()
    assert all(re.fullmatch(r"[01]\.\d{3}", s) for s in shown), shown
    np.testing.assert_allclose([float(s) for s in shown], proba[order], atol=0.0011)
    widths = top.locator(".bar > span").evaluate_all("els => els.map((e) => parseFloat(e.style.width))")
    np.testing.assert_allclose(widths, 100 * proba[order], atol=0.01)
    expect(page.locator("#try-preview img")).to_be_visible()
    expect(page.locator("#try-error")).to_be_empty()
    shot(page, "model", tmp_path)
    page.goto(f"{served.url}/ui/models")
    shot(page, "models", tmp_path)
    page.context.close()
    # bob sees nothing of alice's
    bob = log_in(browser, served, "bob")
    bob.goto(f"{served.url}/ui/models")
    expect(bob.locator("#models tbody")).to_contain_text("No models yet")
    bob.goto(f"{served.url}/ui/models/{served.ids['digits']}")
    expect(bob.locator("#model-error")).to_have_text(f"404: no model {served.ids['digits']}")
    bob.context.close()


def test_a_wav_is_heard_as_low_and_a_broken_file_shows_the_servers_error(served, browser, tmp_path):
    page = log_in(browser, served, "alice")
    open_model(page, served, "tones")
    expect(page.locator("#try-it")).to_have_attribute("data-kind", "audio")
    expect(page.locator("#try-file")).to_have_attribute("accept", re.compile(r"\.wav,\.flac"))
    expect(page.locator('#lineage [data-fact="data_path"]')).to_have_text(served.specs["tones"]["data"]["path"])
    wav = tmp_path / "low.wav"
    wav.write_bytes(wav_bytes(tone(300.0)))
    page.set_input_files("#try-file", str(wav))
    top = page.locator("#try-result ol.top-classes li")
    expect(top).to_have_count(2)  # the model knows two classes
    expect(top.first.locator(".label")).to_have_text("low")

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\0\0\0\0WAVEfmt " + b"\1" * 40)
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.tokens['alice']}"}) as api:
        r = api.post(f"/v1/models/{served.ids['tones']}/predict", files={"file": ("broken.wav", broken.read_bytes(), "audio/wav")})
    assert r.status_code == 422 and r.json()["detail"] and r.json()["detail"][0].startswith("file: "), r.text
    page.set_input_files("#try-file", str(broken))
    expect(page.locator("#try-error")).to_have_text("\n".join(r.json()["detail"]))
    expect(top).to_have_count(0)  # the last answer is gone, not left beside the error
    page.context.close()


def test_onnx_downloads_and_delete_takes_a_version_out_of_the_list(served, browser):
    extra = register(served.store, "alice", served.specs["digits"], served.files["digits"])  # digits v2
    page = log_in(browser, served, "alice")
    page.goto(f"{served.url}/ui/models/{extra}")
    expect(page.locator("h1")).to_contain_text("digits v2")
    with page.expect_download() as download:
        page.click("#onnx-button")
    assert download.value.suggested_filename == "digits-v2.onnx"
    proto = onnx.load(download.value.path())
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["probabilities", "label"]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["classes"]) == served.models["digits"].classes
    page.on("dialog", lambda d: d.accept())
    page.click("#delete-button")
    page.wait_for_url("**/ui/models")
    expect(page.locator("#flash")).to_have_text("Model digits v2 deleted.")
    expect(page.locator("#models tbody tr")).to_have_count(2)
    assert page.locator(f'#models tr[data-model="{extra}"]').count() == 0
    assert served.store.model(extra) is None  # a tombstone: out of the registry
    page.context.close()
