"""The page of `facecmp serve` in a real headless Chromium against a real uvicorn server on a
loopback port: compare two LFW photos and read the verdict, enrol a snapshot from Chromium's
fake camera (a clip made from an LFW photo), then identify another photo of that person.
Screenshots go to the test's tmp directory and, when FACECMP_SCREENSHOTS is set, there too."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import need_data

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                                reason="needs /usr/bin/chromium and /usr/bin/chromedriver "
                                       "(apt-get install chromium chromium-driver)")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install '.[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install '.[test]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from facecmp.server import create_app  # noqa: E402

TOKEN = "browser-test-token"
WAIT_S = 60


def _lfw(name: str, n: int) -> Path:
    return need_data("lfw", name, f"{name}_{n:04d}.jpg")


def write_y4m(photo: Path, out: Path, frames: int = 10) -> Path:
    """A 320x240 YUV4MPEG2 clip (4:2:0) of a photo on a grey background, for Chromium's fake camera."""
    bgr = cv2.imread(str(photo))
    frame = np.full((240, 320, 3), 128, np.uint8)
    frame[:, 40:280] = cv2.resize(bgr, (240, 240))
    i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # the Y, U and V planes one after another
    with open(out, "wb") as f:
        f.write(b"YUV4MPEG2 W320 H240 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + i420.tobytes())
    return out


def _screenshot(driver, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot))
    if os.environ.get("FACECMP_SCREENSHOTS"):
        keep = Path(os.environ["FACECMP_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A uvicorn server in a thread, on a loopback port the OS picked; its base URL."""
    db = tmp_path_factory.mktemp("browser") / "people.db"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(db, TOKEN), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fake camera that shows Abel Pacheco's first LFW photo."""
    clip = write_y4m(_lfw("Abel_Pacheco", 1), tmp_path_factory.mktemp("camera") / "clip.y4m")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,780", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=opts)
    yield driver
    driver.quit()


def _wait_text(driver, element_id: str) -> str:
    """The text of an element once it is shown and not a progress line."""
    def ready(d):
        found = d.find_elements(By.ID, element_id)
        return found[0].text if found and found[0].text and not found[0].text.endswith("…") else False
    return WebDriverWait(driver, WAIT_S).until(ready)


def test_compare_two_photos_in_the_page(server, browser, tmp_path):
    browser.get(server + "/")
    assert browser.title == "facecmp"
    WebDriverWait(browser, WAIT_S).until(lambda d: "gallery on" in d.find_element(By.ID, "server-status").text)
    browser.find_element(By.ID, "file-a").send_keys(str(_lfw("Abel_Pacheco", 1)))
    browser.find_element(By.ID, "file-b").send_keys(str(_lfw("Abel_Pacheco", 4)))
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "compare-btn").is_enabled())
    browser.find_element(By.ID, "compare-btn").click()
    assert _wait_text(browser, "compare-verdict") == "Same person"
    assert "threshold 0.4930" in browser.find_element(By.ID, "compare-distance").text
    width = browser.execute_script("return document.getElementById('canvas-a').width")
    assert width == 250  # the photo drawn at its own size, with the face box on it
    _screenshot(browser, tmp_path, "serve-compare.png")

    browser.find_element(By.ID, "file-b").send_keys(str(_lfw("Colin_Powell", 5)))
    browser.find_element(By.ID, "compare-btn").click()
    assert _wait_text(browser, "compare-verdict") == "Different people"
    problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems  # no script error, no Content-Security-Policy violation


def test_enrol_a_camera_snapshot_then_identify(server, browser, tmp_path):
    browser.get(server + "/")
    browser.find_element(By.CSS_SELECTOR, "[data-tab=enrol]").click()
    browser.find_element(By.ID, "camera-start").click()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.execute_script("return document.getElementById('camera').videoWidth") == 320)
    browser.find_element(By.ID, "camera-snap").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#enrol-photos figure"))
    browser.find_element(By.ID, "enrol-name").send_keys("Abel Pacheco")
    browser.find_element(By.ID, "enrol-token").send_keys("wrong")
    browser.find_element(By.ID, "enrol-btn").click()
    assert _wait_text(browser, "enrol-result") == "Error: wrong token"
    browser.find_element(By.ID, "enrol-token").clear()
    browser.find_element(By.ID, "enrol-token").send_keys(TOKEN)
    browser.find_element(By.ID, "enrol-btn").click()
    assert _wait_text(browser, "enrol-summary") == "Enrolled 1 photo of Abel Pacheco."
    WebDriverWait(browser, WAIT_S).until(lambda d: "Abel Pacheco (1 photo)" in d.find_element(By.ID, "gallery-list").text)
    browser.execute_script("document.getElementById('enrol-btn').scrollIntoView()")
    _screenshot(browser, tmp_path, "serve-enrol.png")
    browser.find_element(By.ID, "camera-stop").click()

    browser.find_element(By.CSS_SELECTOR, "[data-tab=analyze]").click()
    browser.find_element(By.ID, "file-q").send_keys(str(_lfw("Abel_Pacheco", 4)))
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "identify-btn").is_enabled())
    browser.find_element(By.ID, "identify-btn").click()
    rows = _wait_text(browser, "analyze-result")
    assert "Abel Pacheco" in rows and "unknown" not in rows
    _screenshot(browser, tmp_path, "serve-identify.png")
