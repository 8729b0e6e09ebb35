"""`magicanimate serve --demo` in a real browser: headless Chromium (Debian's `chromium`) driven by Selenium.

The page is used as a person would: upload the demo inputs, click Animate, wait for the video, download it. The
browser may reach 127.0.0.1 only (every other host name fails to resolve) and the test checks that the page
asked for nothing else. With MAGICANIMATE_SCREENSHOT=PATH the finished page is saved there (README's picture:
`MAGICANIMATE_SCREENSHOT=docs/serve-page.png .venv/bin/python -m pytest tests/test_serve_browser.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

import av
import pytest

from serve_helpers import WAIT, free_port, small_inputs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytest.importorskip("gradio", reason="serve needs the [serve] extra (Gradio)")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs Selenium (the [test] extra)")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does this as root)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`magicanimate serve --demo` as a user starts it; on SIGTERM it must leave nothing behind."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "magicanimate_cli", "serve", "--demo", "--devices", "cpu",
                             "--port", str(port)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    line = proc.stderr.readline()  # the server announces itself once it listens (or ends: "")
    if not line.startswith("serving "):
        proc.kill()
        raise AssertionError(f"the server did not start: {line}{proc.stderr.read()}")
    workspace = Path(line.split("(workspace ")[1].split(")")[0])
    yield f"http://127.0.0.1:{port}/", workspace, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, served):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a browser or driver
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1440,1200", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_a_person_uploads_the_demo_inputs_previews_animates_and_downloads_the_video(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = served
    reference, motion = small_inputs(tmp_path, frames=4)
    browser.get(url)
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#reference input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(str(reference))
    browser.find_element(By.CSS_SELECTOR, "#motion input[type=file]").send_keys(str(motion))
    frames = browser.find_element(By.CSS_SELECTOR, "#frames input")
    frames.send_keys(Keys.CONTROL, "a")
    frames.send_keys("4", Keys.TAB)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#reference a, #motion a")) >= 2)  # both uploaded
    browser.find_element(By.CSS_SELECTOR, "#preview-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview img[src]"))
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result video[src]"))
    wait.until(lambda d: "Done: 4 frames" in d.find_element(By.CSS_SELECTOR, "#status").text)
    links = {Path(urlparse(a.get_attribute("href")).path).name: a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a[href]")}
    assert {"animation.mp4", "motion.mp4", "animation.mp4.json"} <= set(links)
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(urllib.request.urlopen(links["animation.mp4"]).read())
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert (len(decoded), stream.average_rate, decoded[0].shape) == (4, Fraction(25), (128, 128, 3))
    _save_screenshot(browser)
    assert _hosts_requested(browser) == {"127.0.0.1"}


def test_stopping_the_server_removes_its_workspace(served, browser):
    _, workspace, proc = served
    assert workspace.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) in (0, 130)
    assert not workspace.exists()


def _hosts_requested(browser) -> set[str]:
    """Every host the page sent a request to (data: and blob: URLs have none)."""
    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            parsed = urlparse(message["params"]["request"]["url"])
            if parsed.scheme in ("http", "https", "ws", "wss"):
                hosts.add(parsed.hostname)
    return hosts


def _save_screenshot(browser) -> None:
    target = os.environ.get("MAGICANIMATE_SCREENSHOT")
    if target:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1440, max(1200, height + 140))
        browser.save_screenshot(target)
