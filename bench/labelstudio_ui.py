"""What a Label Studio Community user sees of prelabel's queue, in a real browser.

Starts Label Studio 1.23.2 (devtools/labelstudio_server.py) and prelabel (web + worker) on 127.0.0.1, imports
``--tasks`` SMS (``--seed-labels`` of them with annotations), lets prelabel train and fill the queue, then drives
headless Chromium (Selenium) as an annotator: logs in, opens the project's Data Manager (screenshot: the tabs
prelabel created), clicks **Label All Tasks** (screenshot: the task the stream serves, prelabel's suggestion
selected) and prints what was on screen beside what prelabel ranks first. Needs ``chromium`` and
``chromium-driver`` (Debian packages) and the Label Studio virtualenv.

    python -m bench.labelstudio_ui --out docs/figures
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.labelstudio import SECRET, sms_tasks
from formats.labelstudio import QUEUE_VERSION
from devtools.labelstudio_server import ADMIN, TOKEN, LabelStudio, ensure_template
from scripts.stack import Stack

logger = logging.getLogger("bench.labelstudio_ui")


def browser(width: int = 1400, height: int = 1000) -> Any:
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)


def wait_for(driver: Any, find: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = find(driver)
            if found:
                return found
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"not on the page after {timeout}s: {driver.current_url}")


def visible_text(driver: Any, needle: str) -> bool:
    """Whether ``needle`` is in the page's text, its iframes' included (Label Studio may render a task in one)."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    if needle in driver.find_element(By.TAG_NAME, "body").text:
        return True
    for frame in driver.find_elements(By.TAG_NAME, "iframe"):
        driver.switch_to.frame(frame)
        try:
            if needle in driver.find_element(By.TAG_NAME, "body").text:
                return True
        finally:
            driver.switch_to.default_content()
    return False


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    ls = LabelStudio(work / "ls", template=ensure_template(work / "ls-template")).start()
    try:
        project = ls.create_project("sms spam")
        tasks, truth = sms_tasks(args.tasks, args.seed_labels)
        settings = {"LABELSTUDIO_URL": ls.url, "LABELSTUDIO_TOKEN": TOKEN, "LABELSTUDIO_PROJECTS": str(project),
                    "LABELSTUDIO_WEBHOOK_SECRET": SECRET, "RECONCILE_INTERVAL_S": "3600", "LOG_LEVEL": "INFO"}
        with Stack(work / "prelabel", work, tagtog=False, settings=settings) as stack:
            ls.add_webhook(project, f"{stack.web_url}/webhooks/labelstudio", {"X-Prelabel-Secret": SECRET})
            ls.import_tasks(project, tasks)
            summary = stack.settle(quiet_s=3, timeout=900)
            queue = {t["id"]: next((p for p in t["predictions"] if p["model_version"] == QUEUE_VERSION), None)
                     for t in ls.tasks(project) if not t["annotations"]}
            top = stack.api("/api/v1/projects/1/next?n=1&strategy=least_confidence")["documents"][0]
            driver = browser()
            try:
                driver.get(f"{ls.url}/user/login")
                wait_for(driver, lambda d: d.find_element(By.NAME, "email")).send_keys(ADMIN[0])
                driver.find_element(By.NAME, "password").send_keys(ADMIN[1])
                driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
                wait_for(driver, lambda d: "/user/login" not in d.current_url)
                driver.get(f"{ls.url}/projects/{project}/data")
                tabs = wait_for(driver, lambda d: [e.text for e in d.find_elements(
                    By.XPATH, "//*[contains(text(), 'prelabel:')]") if e.text])
                time.sleep(2)
                driver.save_screenshot(str(args.out / "labelstudio_data_manager.png"))
                wait_for(driver, lambda d: d.find_element(
                    By.XPATH, "//button[contains(., 'Label All Tasks')]")).click()
                wait_for(driver, lambda d: "labeling" in d.current_url or "task=" in d.current_url)
                # the task the stream served this user is locked to them: the API answers the same one
                served = ls.api("GET", f"/api/projects/{project}/next").json()
                shown = served["data"]["text"]
                try:
                    wait_for(driver, lambda d: visible_text(d, shown[:30]), timeout=90)
                except TimeoutError:
                    (args.out / "labelstudio_page.html").write_text(driver.page_source)
                    driver.save_screenshot(str(args.out / "labelstudio_label_all_tasks.png"))
                    raise
                time.sleep(2)
                driver.save_screenshot(str(args.out / "labelstudio_label_all_tasks.png"))
                checked = [e.get_attribute("value") or e.find_element(By.XPATH, "..").text for e in
                           driver.find_elements(By.CSS_SELECTOR, "input[type=radio]:checked, "
                                                                 "input[type=checkbox]:checked")]
                page_url = driver.current_url
            finally:
                driver.quit()
    finally:
        ls.stop()
    pred = queue.get(served["id"])
    lowest = min((p["score"] for p in queue.values() if p), default=None)
    return {"labels": summary["labels"], "champion": summary["champion"]["version"] if summary["champion"] else None,
            "pool_tasks": len(queue), "pool_tasks_with_suggestion": sum(p is not None for p in queue.values()),
            "tabs_seen": sorted(set(tabs)), "served_task": served["id"], "text_on_screen": shown[:80],
            "choice_selected_on_screen": checked, "truth": truth[shown],
            "suggestion": pred and {"choice": pred["result"][0]["value"]["choices"], "score": pred["score"],
                                    "cluster": pred.get("cluster")},
            "lowest_score_in_pool": lowest, "prelabel_first_pick": top, "url": page_url}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.labelstudio_ui", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--seed-labels", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/out"), help="folder for the two screenshots")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prelabel-lsui-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
