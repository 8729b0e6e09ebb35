"""`magicanimate serve --demo` in a real browser: headless Chromium (Debian's `chromium`) driven by Selenium.

The page is used as a person would: upload the demo inputs, click Animate, wait for the video, download it; make
a mistake and read the error; close a tab while its job runs and watch another tab's job run next. The server
runs in the test's process with a Gate (tests/serve_helpers.py) holding its jobs at named points, so what
happens when is decided by the test. The browser may reach 127.0.0.1 only (every other host name fails to
resolve) and the test checks that the page asked for nothing else. With MAGICANIMATE_SCREENSHOT=PATH the finished
page is saved there (docs/serve.md's picture:
`MAGICANIMATE_SCREENSHOT=docs/serve-page.png .venv/bin/python -m pytest tests/test_serve_browser.py`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

import av
import pytest

from serve_helpers import WAIT, Gate, free_port, small_inputs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytest.importorskip("gradio", reason="serve needs the [serve] extra (Gradio)")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs Selenium (the [test] extra)")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does this as root)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="module")
def served(gate):
    """`serve --demo` on the CPU, in this process, its jobs passing the test's gate."""
    from magicanimate_cli.serve.server import serving
    from magicanimate_cli.serve.settings import ServeSettings

    with serving(ServeSettings(port=free_port(), demo=True, devices=("cpu",)), hooks=gate) as server:
        yield server


@pytest.fixture(autouse=True)
def gate_let_go(gate):
    """Whatever a test leaves held is let go after it, so that a failure never keeps a job (and the server's
    stop, which waits for its jobs) waiting."""
    yield
    gate.reset()


@pytest.fixture(autouse=True)
def tabs_closed(browser):
    """Every tab a test opened is closed after it: each open page holds a connection to the server (its
    heartbeat), and Chromium opens at most 6 to one host, so a seventh page would never load."""
    yield
    first, *others = browser.window_handles
    for handle in others:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(first)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    return small_inputs(tmp_path_factory.mktemp("browser-inputs"), frames=4)


@pytest.fixture(scope="module")
def browser(tmp_path_factory, served):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a browser or driver
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1440,1200", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                     # tabs in the background keep running (the test watches one tab while another works)
                     "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                     "--disable-backgrounding-occluded-windows"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser, url: str, inputs: tuple[Path, Path]) -> WebDriverWait:
    """Load the page in the current tab and upload both inputs, as a person would."""
    browser.get(url)
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.1)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#reference input[type=file]"))
    browser.find_element(By.CSS_SELECTOR, "#reference input[type=file]").send_keys(str(inputs[0]))
    browser.find_element(By.CSS_SELECTOR, "#motion input[type=file]").send_keys(str(inputs[1]))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#reference a, #motion a")) >= 2)  # both uploaded
    return wait


def status(browser) -> str:
    """The job's line of the status area (Animate and Cancel write it)."""
    return browser.find_element(By.CSS_SELECTOR, "#status").text


def note(browser) -> str:
    """The status area's other line (Preview, and what a change of the inputs did)."""
    return browser.find_element(By.CSS_SELECTOR, "#note").text


def type_into(browser, field: str, text: str) -> None:
    """Replace what a text field holds, as a person typing does."""
    box = browser.find_element(By.CSS_SELECTOR, f"#{field} input")
    box.clear()
    box.send_keys(text, Keys.TAB)


def enabled(browser, button: str) -> bool:
    return browser.find_element(By.CSS_SELECTOR, f"#{button}-button").is_enabled()


def preview_shown(browser) -> bool:
    return bool(browser.find_elements(By.CSS_SELECTOR, "#preview img[src]"))


def test_a_person_uploads_the_demo_inputs_previews_animates_and_downloads_the_video(served, browser, inputs,
                                                                                    tmp_path):
    wait = open_page(browser, served.url, inputs)
    browser.find_element(By.CSS_SELECTOR, "#preview-button").click()
    wait.until(preview_shown)
    assert note(browser).startswith("Preview ready: motion frames 0, 1, 2 and 3 of the 4 frames to animate")
    assert browser.find_element(By.CSS_SELECTOR, "#reference-photo img[src]").is_displayed()  # the photo itself
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result video[src]"))
    wait.until(lambda d: "Done: 4 frames" in status(d))
    _save_screenshot(browser)
    links = {Path(urlparse(a.get_attribute("href")).path).name: a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a[href]")}
    (video_name,) = [name for name in links if re.fullmatch(r"reference-motion-[0-9a-f]{6}\.mp4", name)]
    assert set(links) >= {video_name, video_name.replace(".mp4", "-densepose.mp4"), f"{video_name}.json"}
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(urllib.request.urlopen(links[video_name]).read())
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert (len(decoded), stream.average_rate, decoded[0].shape) == (4, Fraction(25), (128, 128, 3))
    assert browser.execute_script("return [...document.querySelectorAll('#downloads .stem')].map("
                                  "e => e.scrollWidth <= e.clientWidth)") == [True] * 3  # each name whole, not cut
    wait.until(lambda d: enabled(d, "animate") and not enabled(d, "cancel"))  # nothing runs: nothing to cancel
    assert browser.find_element(By.CSS_SELECTOR, "#smooth input").get_attribute("disabled")  # no render to smooth
    assert "no DensePose model" in browser.find_element(By.CSS_SELECTOR, "#render-first").text  # --demo has none
    assert _hosts_requested(browser) == {"127.0.0.1"}


def test_an_error_stays_in_the_status_area_for_more_than_15_seconds_and_covers_nothing(served, browser, inputs):
    browser.switch_to.new_window("tab")
    wait = open_page(browser, served.url, inputs)
    type_into(browser, "frames", "0")
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    wait.until(lambda d: status(d) == "Error: Frames: must be at least 1 (got 0)")
    # the page's own clock runs 15 s ahead at once (Chromium's virtual time): every timer it set, a toast's
    # or any other, has fired by the time the script's own 15-s timer has
    browser.execute_cdp_cmd("Emulation.setVirtualTimePolicy", {"policy": "advance"})
    elapsed = browser.execute_async_script("const done = arguments[arguments.length - 1], start = Date.now();"
                                           "setTimeout(() => done(Date.now() - start), 15000)")
    assert elapsed >= 15000  # the page's clock says 15 s have passed
    assert status(browser) == "Error: Frames: must be at least 1 (got 0)"
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]") == []  # nothing over the buttons
    assert browser.find_element(By.CSS_SELECTOR, "#animate-button").is_enabled()
    browser.close()  # the tab whose clock ran ahead goes, so that no other page shares its time
    browser.switch_to.window(browser.window_handles[0])


def start_a_held_job(served, browser, gate, inputs):
    """A new tab's job, running and held by the gate after the first of its 2 windows; the tab's waiter."""
    gate.reset()
    gate.hold("window")
    browser.switch_to.new_window("tab")
    wait = open_page(browser, served.url, inputs)
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    gate.wait_for_arrivals("window")
    return wait


def test_cancel_of_a_running_job_says_so_then_ends_cancelled_with_the_buttons_ready(served, browser, gate, inputs):
    wait = start_a_held_job(served, browser, gate, inputs)
    browser.find_element(By.CSS_SELECTOR, "#cancel-button").click()
    wait.until(lambda d: status(d) == "Cancelling: the job stops at its next window.")
    gate.release("window")
    wait.until(lambda d: status(d) == "Cancelled: the job stopped at its next window and its files were removed.")
    assert gate.arrived["window"] == 1
    browser.find_element(By.CSS_SELECTOR, "#preview-button").click()  # the page is ready for the next action
    wait.until(lambda d: note(d).startswith("Preview ready"))


def test_closing_a_tab_mid_job_lets_the_next_tabs_job_run_at_once(served, browser, gate, inputs):
    gate.reset()
    gate.hold("window")
    before = set(served.workspace.jobs.iterdir())
    browser.switch_to.new_window("tab")
    leaving = browser.current_window_handle
    _requests(browser)  # what the browser asked for so far: read, so that what follows is this tab's
    open_page(browser, served.url, inputs)
    (session,) = {url.rsplit("/", 1)[1] for url in _requests(browser) if "/gradio_api/heartbeat/" in url}
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    gate.wait_for_arrivals("window")  # its first of 2 windows is done; it is held before the second
    browser.switch_to.new_window("tab")
    wait = open_page(browser, served.url, inputs)
    steps = browser.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
    steps.clear()
    steps.send_keys("1", Keys.TAB)  # one window: a short job
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    wait.until(lambda d: status(d).startswith("Waiting: your job is next in the queue"))
    staying = browser.current_window_handle
    browser.switch_to.window(leaving)
    browser.close()
    browser.switch_to.window(staying)
    gate.wait_for_arrivals(f"session:gone:{session}")  # the server heard the tab go and cancelled its job
    gate.release("window")  # the abandoned job stops at the check after the window it was held in
    gate.wait_for_arrivals("job:start", 2)
    wait.until(lambda d: status(d).startswith("Running on cpu"))  # the waiting tab's job runs next
    gate.open("window")
    wait.until(lambda d: status(d) == "Done: 4 frames at 25 fps, seed " + status(d).split("seed ")[-1])
    assert gate.arrived["window"] == 1 + 1  # one window of the abandoned job, then the second job's one
    (kept,) = set(served.workspace.jobs.iterdir()) - before  # the finished job's folder; the abandoned one is gone
    assert any(kept.glob("reference-motion-*.mp4"))


def test_a_preview_made_while_a_job_runs_leaves_the_jobs_status_line_as_it_was(served, browser, gate, inputs):
    wait = start_a_held_job(served, browser, gate, inputs)
    wait.until(lambda d: status(d).startswith("Running on cpu: "))
    running = status(browser)
    assert enabled(browser, "cancel") and not enabled(browser, "animate")  # one job per page; it can be cancelled
    browser.find_element(By.CSS_SELECTOR, "#preview-button").click()
    wait.until(lambda d: note(d).startswith("Preview ready") and preview_shown(d))
    assert status(browser) == running  # the preview said its piece on its own line
    gate.open("window")
    wait.until(lambda d: status(d).startswith("Done: 4 frames"))
    assert note(browser).startswith("Preview ready") and preview_shown(browser)  # the job kept the preview
    wait.until(lambda d: enabled(d, "animate") and not enabled(d, "cancel"))


def test_a_preview_goes_when_the_motion_or_a_setting_changes_and_the_note_says_why(served, browser, inputs,
                                                                                  tmp_path):
    from magicanimate_cli.serve.handlers import PREVIEW_GONE

    browser.switch_to.new_window("tab")
    wait = open_page(browser, served.url, inputs)
    other_motion = small_inputs(tmp_path, frames=3)[1]
    browser.find_element(By.CSS_SELECTOR, "#preview-button").click()
    wait.until(lambda d: note(d).startswith("Preview ready") and preview_shown(d))
    picture = _served_file(browser.find_element(By.CSS_SELECTOR, "#preview img").get_attribute("src"))
    assert picture.is_file() and picture.name == "preview.png"
    browser.find_element(By.CSS_SELECTOR, "#motion button[aria-label=Clear]").click()
    browser.find_element(By.CSS_SELECTOR, "#motion input[type=file]").send_keys(str(other_motion))
    wait.until(lambda d: note(d) == PREVIEW_GONE and not preview_shown(d))
    assert not picture.exists()  # gone from the server too: nothing on the page points at it
    browser.find_element(By.CSS_SELECTOR, "#preview-button").click()
    wait.until(lambda d: note(d).startswith("Preview ready: motion frames 0, 1 and 2 of the 3 frames"))
    type_into(browser, "frames", "2")  # the preview showed 3 frames: it no longer shows what Animate would do
    wait.until(lambda d: note(d) == PREVIEW_GONE and not preview_shown(d))


@pytest.mark.parametrize("name, kind", [("monalisa.png", "a PNG image"), ("monalisa.mp4", "a PNG image (named .mp4)")])
def test_a_picture_chosen_as_the_motion_is_named_as_what_it_is_in_the_status_area_and_nothing_pops_up(
        served, browser, gate, inputs, tmp_path, name, kind):
    gate.reset()
    picture = tmp_path / name
    picture.write_bytes(inputs[0].read_bytes())
    browser.switch_to.new_window("tab")
    wait = open_page(browser, served.url, (inputs[0], picture))
    said = f"Error: {name}: {kind}, not a video; the motion must be a video (.mp4, .mov, .webm, .avi, .gif or .mkv)"
    wait.until(lambda d: note(d) == said)  # as soon as it is chosen
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    wait.until(lambda d: status(d) == said)  # and by Animate, which starts nothing
    assert gate.arrived["job:start"] == 0
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]") == []  # nothing over the buttons
    wait.until(lambda d: enabled(d, "animate") and not enabled(d, "cancel"))


def test_a_seed_that_is_not_a_whole_number_is_refused_naming_the_field_and_stays_as_typed(served, browser, gate,
                                                                                          inputs):
    gate.reset()
    browser.switch_to.new_window("tab")
    wait = open_page(browser, served.url, inputs)
    type_into(browser, "seed", "abc")
    browser.find_element(By.CSS_SELECTOR, "#animate-button").click()
    wait.until(lambda d: status(d) == 'Error: Seed: must be a whole number (got "abc")')
    assert browser.find_element(By.CSS_SELECTOR, "#seed input").get_attribute("value") == "abc"
    assert gate.arrived["job:start"] == 0  # no job ran, with a random seed or any other


def _served_file(url: str) -> Path:
    """The server's file behind a Gradio file address (`/gradio_api/file=PATH`)."""
    return Path(urlparse(url).path.split("/gradio_api/file=", 1)[1])


def _requests(browser) -> list[str]:
    """The URLs the browser requested since the last look (Chromium's performance log, read once)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _hosts_requested(browser) -> set[str]:
    """Every host the page sent a request to (data: and blob: URLs have none)."""
    parsed = [urlparse(url) for url in _requests(browser)]
    return {url.hostname for url in parsed if url.scheme in ("http", "https", "ws", "wss")}


def _save_screenshot(browser) -> None:
    target = os.environ.get("MAGICANIMATE_SCREENSHOT")
    if target:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1440, max(1200, height + 140))
        browser.save_screenshot(target)
