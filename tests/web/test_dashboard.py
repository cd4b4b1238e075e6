"""The dashboard in a real headless Chromium (Debian chromium + chromium-driver, driven by Selenium) against the
web process under gunicorn: a project trained by the command line shows its versions, learning curve, loss curves,
confusion matrix, false predictions with their (escaped) texts, and the queue; a screenshot is kept in
test-artifacts/. Skipped when Chromium is not installed, unless PRELABEL_REQUIRE_CHROMIUM=1 (CI sets it)."""
from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
import requests

from scripts import cli
from scripts.stack import Stack

from ..conftest import ROOT, SMS_CSV

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
XSS = "<script>window.__xss = 1</script> WINNER!! claim your FREE prize, txt WIN to 80086 now"

if not (CHROMIUM and DRIVER):
    if os.environ.get("PRELABEL_REQUIRE_CHROMIUM") == "1":
        pytest.fail("PRELABEL_REQUIRE_CHROMIUM=1 but chromium/chromedriver are not installed", pytrace=False)
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A local project trained twice by scripts.cli (quick + rnn), one spam text labelled ham in validation."""
    tmp = tmp_path_factory.mktemp("dash")
    env = {"INSTANCE_PATH": str(tmp / "instance"), "MODEL_FAMILIES": "quick,rnn", "MODEL_FAMILY_EVERY": "",
           "MODEL_EPOCHS": "4", "TAGTOG_PROJECTS": "", "CV_FOLDS": "2"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        df = pd.read_csv(SMS_CSV, keep_default_na=False).sample(n=700, random_state=3).reset_index(drop=True)
        df.insert(0, "id", [f"sms-{i}" for i in range(len(df))])
        xss_id = "xss-0"  # spam-like text labelled ham: a false prediction out of fold
        df = pd.concat([df, pd.DataFrame([{"id": xss_id, "label": "ham", "text": XSS}])], ignore_index=True)
        df.iloc[:400].to_csv(tmp / "a.csv", index=False)
        df.iloc[400:].to_csv(tmp / "b.csv", index=False)
        assert cli.main(["import", str(tmp / "a.csv"), "--project", "local/sms", "--id-col", "id",
                         "--label-col", "label"]) == 0
        assert cli.main(["train", "--project", "local/sms"]) == 0
        assert cli.main(["import", str(tmp / "b.csv"), "--project", "local/sms", "--id-col", "id",
                         "--label-col", "label"]) == 0
        assert cli.main(["train", "--project", "local/sms"]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    stack = Stack(tmp, tmp, tagtog=False, start_worker=False, settings=env)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1400,2400"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def cells(driver, table_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_element(By.ID, table_id).find_elements(By.TAG_NAME, "tr")
    return [[c.text for c in r.find_elements(By.CSS_SELECTOR, "th, td")] for r in rows]


def test_project_page_shows_the_right_numbers(trained, browser):
    from selenium.webdriver.common.by import By

    api = requests.get(f"{trained.web_url}/api/v1/projects", timeout=10).json()["projects"]
    project = next(p for p in api if p["name"] == "sms")
    versions = requests.get(f"{trained.web_url}/api/v1/projects/{project['id']}/versions", timeout=10).json()
    versions = versions["versions"]
    champion = project["champion"]
    full = requests.get(f"{trained.web_url}/api/v1/projects/{project['id']}/versions/{champion['version']}",
                        timeout=10).json()

    browser.get(f"{trained.web_url}/dashboard/projects/{project['id']}")
    assert browser.find_element(By.ID, "champion").text == f"v{champion['version']}"
    table = cells(browser, "versions")
    kept = [v for v in versions if v["status"] != "rejected"]
    assert len(table) == 1 + len(kept) and table[1][0] == f"v{champion['version']}"  # the champion leads
    rejected = [v for v in versions if v["status"] == "rejected"]
    if rejected:  # folded away until asked for
        assert not browser.find_element(By.ID, "rejected-versions").is_displayed()
        browser.find_element(By.CSS_SELECTOR, "#rejected summary").click()
        table += cells(browser, "rejected-versions")[1:]
    assert len(table) == 1 + len(versions)  # header + one row per version
    assert browser.find_element(By.ID, "estimate").text != "—"  # the champion's estimate on the pool
    shown = {row[0]: row for row in table[1:]}
    for v in versions:
        row = shown[f"v{v['version']}"]
        assert row[1] == v["family"] and row[3] == v["status"] and row[5] == f"{v['f1_macro']:.4f}"
    svg_titles = [t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "svg title")]
    assert "learning curve" in svg_titles

    cm = full["metrics"]["confusion_matrix"]
    shown_cm = cells(browser, "confusion")
    assert shown_cm[0][1:] == cm["labels"]
    assert [[int(x) for x in row[1:]] for row in shown_cm[1:]] == cm["matrix"]
    false = cells(browser, "false-predictions")[1:]
    assert len(false) == min(50, len(full["metrics"]["false_predictions"])) and false[0][0] != "none"

    # the document's <script> is shown as text, never run
    xss = [row for row in false if "WINNER" in row[4]]
    assert xss and xss[0][4] == XSS and xss[0][1] == "ham"
    assert browser.execute_script("return window.__xss === undefined")
    assert cells(browser, "queue")[1] == ["0", "0", "0", "0"]

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000


def test_loss_curves_of_a_chosen_rnn_version(trained, browser):
    from selenium.webdriver.common.by import By

    api = requests.get(f"{trained.web_url}/api/v1/projects", timeout=10).json()["projects"]
    pid = next(p for p in api if p["name"] == "sms")["id"]
    versions = requests.get(f"{trained.web_url}/api/v1/projects/{pid}/versions", timeout=10).json()["versions"]
    rnn = next(v for v in versions if v["family"] == "rnn")
    quick = next(v for v in versions if v["family"] == "quick")
    browser.get(f"{trained.web_url}/dashboard/projects/{pid}?version={rnn['version']}")
    titles = [t.get_attribute("textContent") for t in browser.find_elements(By.CSS_SELECTOR, "svg title")]
    assert f"loss curves v{rnn['version']}" in titles and f"confusion matrix v{rnn['version']}" in titles
    browser.get(f"{trained.web_url}/dashboard/projects/{pid}?version={quick['version']}")
    assert "has no epochs" in browser.find_element(By.ID, "loss-curves").text
    browser.get(f"{trained.web_url}/dashboard")
    assert "local/sms" in browser.find_element(By.ID, "projects").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-index.png"))
