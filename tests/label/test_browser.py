"""The labeling page in a real headless Chromium (Debian's) against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import os
import shutil

import pytest

from facecore.label import create_app, loader

from .conftest import ADMIN
from .live import ServerThread, task_body

CHROMIUM = os.environ.get("FACECORE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACECORE_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"chromium not found at {CHROMIUM}")
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip(f"chromedriver not found at {CHROMEDRIVER}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_click_keyboard_undo(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    app = create_app(tmp_path / "page.sqlite", admin_token=ADMIN, break_every_trials=3)
    db = app.state.db

    ids = loader.load(db, [task_body(r) for r in ("upper", "lower", "face", "upper")])
    ann = db.add_annotator("Browser")
    wait = WebDriverWait(browser, 15)

    def ready_on(task_id=None):
        def check(d):
            main = d.find_element(By.ID, "trial")
            ok = main.get_attribute("data-state") == "ready" and main.is_displayed()
            return ok and (task_id is None or main.get_attribute("data-task-id") == task_id)
        wait.until(check)
        main = browser.find_element(By.ID, "trial")
        return main.get_attribute("data-task-id"), main.get_attribute("data-shown-left")

    def stored():
        return {j["task_id"]: j for j in db.judgments(ann["annotator_id"])}

    def key(k):
        browser.find_element(By.TAG_NAME, "body").send_keys(k)

    with ServerThread(app) as server:
        # 1) log in through the token field
        browser.get(server.base_url + "/")
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        browser.find_element(By.ID, "token-input").send_keys("wrong-token")
        browser.find_element(By.ID, "login-btn").click()
        wait.until(lambda d: "Unknown token" in d.find_element(By.ID, "login-error").text)
        field = browser.find_element(By.ID, "token-input")
        field.clear()
        field.send_keys(ann["token"])
        browser.find_element(By.ID, "login-btn").click()
        t1, left1 = ready_on(ids[0])
        assert "Browser" in browser.find_element(By.ID, "who").text
        assert "4 of 4 left" in browser.find_element(By.ID, "progress").text
        # the three pictures really decoded
        for img in ("img-photo", "img-left", "img-right"):
            assert browser.execute_script(f"return document.getElementById('{img}').naturalWidth") == 8

        # 2) answer by click: "left" means the candidate shown on the left
        browser.find_element(By.ID, "btn-left").click()
        t2, left2 = ready_on(ids[1])
        assert stored()[t1]["choice"] == left1 and stored()[t1]["shown_left"] == left1

        # 3) by keyboard: right arrow, then "3" (tie)
        key(Keys.ARROW_RIGHT)
        t3, _ = ready_on(ids[2])
        assert stored()[t2]["choice"] == ("b" if left2 == "a" else "a")
        key("3")
        # break reminder after 3 trials: keys do nothing until it is dismissed
        wait.until(lambda d: d.find_element(By.ID, "break").is_displayed())
        ready_on(ids[3])
        assert stored()[t3]["choice"] == "tie"
        key("1")
        assert ids[3] not in stored()
        key(Keys.ENTER)
        wait.until(lambda d: not d.find_element(By.ID, "break").is_displayed())

        # 4) undo (u) brings back the third task; answer it again as "can't tell" (s)
        key("u")
        ready_on(ids[2])
        wait.until(lambda d: ids[2] not in stored())
        key("s")
        ready_on(ids[3])
        assert stored()[t3]["choice"] == "skip"

        # 5) last task by click on "right"; then the page says it is done; Backspace undoes
        browser.find_element(By.ID, "btn-right").click()
        wait.until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert len(stored()) == 4
        assert "0 of 4 left" in browser.find_element(By.ID, "progress").text
        key(Keys.BACKSPACE)
        ready_on(ids[3])
        assert len(stored()) == 3

        # 6) a token in the link fragment logs in directly, and is removed from the address bar
        browser.get(server.base_url + "/#token=" + ann["token"])
        ready_on(ids[3])
        assert "token" not in browser.current_url

    rows = db.judgments(ann["annotator_id"])
    assert [r["task_id"] for r in rows] == ids[:3]
    assert all(r["response_ms"] >= 0 for r in rows)
    assert len({r["client_id"] for r in rows}) == 3
    assert db.counts()["undone"] == 2
