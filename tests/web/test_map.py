"""The map of the corpus (issue 32): drawn by the worker once per champion (worker/loop/mapping.py) and stored;
the web process only reads it. In a real headless Chromium against gunicorn: one point per mapped document, the
colour switch (person label, prediction, disagreement) without any script, hover text, and links that open each
document on tagtog. Skipped without Chromium unless PRELABEL_REQUIRE_CHROMIUM=1 (CI sets it)."""
from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from scripts.stack import Stack

from ..conftest import ROOT, SMS_CSV

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TAGTOG = "https://tagtog.example.org"
N_LABELLED, N_POOL, LIMIT = 200, 400, 300


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A project with 200 labelled SMS (3 of them labelled wrong) and 400 in the pool, trained, mapped at
    most 300 points."""
    from config import Settings
    from storage import Document, Label, Project, Store, text_hash
    from worker.loop import Loop

    tmp = tmp_path_factory.mktemp("map")
    df = pd.read_csv(SMS_CSV, keep_default_na=False).sample(n=N_LABELLED + N_POOL, random_state=5)
    settings = Settings(instance_path=str(tmp / "instance"), model_families="quick", cv_folds=2, min_labels=10,
                        tagtog_base_url=TAGTOG)
    store = Store(settings.db_url)
    store.create_all()
    pid = store.ensure_project("local", "local", "spam")  # trained as a local project: no platform to reach
    with store.session() as s:
        docs = [Document(project_id=pid, platform_id=f"a{i:04d}-sms{i}.txt", text=t, text_hash=text_hash(t))
                for i, t in enumerate(df.text)]
        s.add_all(docs)
        s.flush()
        labels = list(df.label[:N_LABELLED])
        for i in range(0, 30, 10):  # a few wrong labels: they should stand out in the disagreement view
            labels[i] = "ham" if labels[i] == "spam" else "spam"
        s.add_all([Label(project_id=pid, document_id=d.id, who="person", value=json.dumps(y))
                   for d, y in zip(docs, labels)])
    loop = Loop(settings, store)
    assert loop.training.train(pid).status == "champion"
    assert store.map_outdated(pid)
    assert loop.maps.compute(pid, limit=LIMIT) == LIMIT  # every labelled document and 100 of the pool
    assert not store.map_outdated(pid)
    with store.session() as s:  # then shown as the tagtog project it stands for, to check the links
        p = s.get(Project, pid)
        p.platform, p.owner = "tagtog", "alice"
    stored = store.corpus_map(pid)
    assert len(stored["points"]) == LIMIT and stored["n_documents"] == N_LABELLED + N_POOL
    assert sum(p[4] is not None for p in stored["points"]) == N_LABELLED
    assert all(0 <= p[0] <= 1 and 0 <= p[1] <= 1 for p in stored["points"])
    return tmp, settings, pid, stored


def test_the_web_request_computes_nothing_of_the_map(mapped, monkeypatch):
    import model.corpus_map
    import model.embed
    from app import create_app

    tmp, settings, pid, stored = mapped

    def forbidden(*a, **k):
        raise AssertionError("the map was computed in a web request")

    monkeypatch.setattr(model.corpus_map, "project", forbidden)
    monkeypatch.setattr(model.embed, "encoder_for", forbidden)
    c = create_app({"instance_path": settings.instance_path, "tagtog_base_url": TAGTOG}).test_client()
    page = c.get(f"/dashboard/projects/{pid}").get_data(as_text=True)
    section = page.split('<details id="map"')[1].split("</details>")[0]
    assert section.count("<circle ") == LIMIT
    assert section.count(f'<a href="{TAGTOG}/alice/spam/pool/a0') == LIMIT  # every point opens its document
    assert f"drawn for v{stored['version']}" in page


def test_the_map_in_chromium(mapped):
    if not (CHROMIUM and DRIVER):
        if os.environ.get("PRELABEL_REQUIRE_CHROMIUM") == "1":
            pytest.fail("PRELABEL_REQUIRE_CHROMIUM=1 but chromium/chromedriver are not installed", pytrace=False)
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tmp, settings, pid, stored = mapped
    env = {"INSTANCE_PATH": settings.instance_path, "TAGTOG_BASE_URL": TAGTOG, "TAGTOG_PROJECTS": "",
           "MODEL_FAMILIES": "quick"}
    stack = Stack(tmp, tmp, tagtog=False, start_worker=False, settings=env)
    stack.start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--window-size=1400,2000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(f"{stack.web_url}/dashboard/projects/{pid}")
        circles = driver.find_elements(By.CSS_SELECTOR, "#map svg circle")
        assert len(circles) == LIMIT
        links = driver.find_elements(By.CSS_SELECTOR, "#map svg a")
        assert len(links) == LIMIT and all(a.get_dom_attribute("href").startswith(f"{TAGTOG}/alice/spam/pool/a")
                                           for a in links)
        wrong = driver.find_elements(By.CSS_SELECTOR, "#map svg circle.D1")
        assert wrong  # labels the model disagrees with (the planted ones among them)

        def fill(el):
            return driver.execute_script("return getComputedStyle(arguments[0]).fill", el)

        assert fill(wrong[0]) != "rgb(214, 39, 40)"  # person-label colours first
        driver.find_element(By.CSS_SELECTOR, "label[for=map-dis]").click()
        assert fill(wrong[0]) == "rgb(214, 39, 40)"  # red once "disagreement" is chosen, with no script
        agree = driver.find_elements(By.CSS_SELECTOR, "#map svg circle.D0")
        assert agree and fill(agree[0]) == "rgb(158, 202, 225)"
        title = circles[0].find_element(By.TAG_NAME, "title").get_attribute("textContent")
        assert "model:" in title and len(title) > 20  # hover: label, prediction and the start of the text
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        driver.find_element(By.ID, "map").screenshot(str(ROOT / "test-artifacts" / "corpus_map.png"))
    finally:
        driver.quit()
        stack.stop()
