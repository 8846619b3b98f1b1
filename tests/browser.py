"""Headless Chromium for tests of pages the jobs write: does the page load,
does every image on it decode, what does it look like.

A page's HTML can be well-formed and still show nothing (a wrong relative
path, a PNG a browser refuses), and only a browser says so. It drives
Debian's `chromium` through its `chromium-driver` (WebDriver), both named
by path: Selenium's driver manager would otherwise try to download a
browser and a driver, and test machines have no network.

Where the packages are missing a test skips, naming them; on CI (the `CI`
variable set) it fails instead, since CI installs them (`make
system-packages`) and a skip there would hide a broken set-up.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import pathlib
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
WINDOW = (1280, 1024)  # A laptop's page width: what the layout is checked at.
TIMEOUT_S = 60
# Every <img> with what the browser made of it; naturalWidth is 0 for one
# that did not decode (a missing file, a broken PNG) even once `complete`.
_IMAGES_SCRIPT = """
return Array.from(document.images).map(img => ({
    src: img.getAttribute('src'), complete: img.complete,
    naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight}));
"""


@dataclasses.dataclass(frozen=True)
class PageImage:
    """One `<img>` as loaded: `src` as written in the page."""

    src: str
    complete: bool
    natural_width: int
    natural_height: int

    @property
    def loaded(self) -> bool:
        return self.complete and self.natural_width > 0 and self.natural_height > 0


def missing() -> str | None:
    """Why no headless Chromium can run here, or None."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package (pip install -e '.[test]')")
    if absent:
        return (f"headless Chromium needs {', '.join(absent)}: apt-get install "
                f"{' '.join(DEBIAN_PACKAGES)}")
    return None


def require() -> None:
    """Skips the calling test where Chromium is missing; fails on CI."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the browser must be installed: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(window: tuple[int, int] = WINDOW):
    """A headless Chromium WebDriver at a fixed window size, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.add_argument("--headless=new")
    options.add_argument("--disable-gpu")
    # Small /dev/shm in containers makes Chromium's renderer crash.
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    if os.geteuid() == 0:  # Chromium refuses to run its sandbox as root.
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


def images(driver) -> list[PageImage]:
    """The current page's images, once every one has finished (or failed) loading."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, TIMEOUT_S).until(
        lambda d: all(i["complete"] for i in d.execute_script(_IMAGES_SCRIPT)))
    return [PageImage(i["src"], i["complete"], i["naturalWidth"], i["naturalHeight"])
            for i in driver.execute_script(_IMAGES_SCRIPT)]


def screenshot(driver, path: str | os.PathLike) -> None:
    """A PNG of the whole page, not only the window: the DevTools protocol
    captures beyond the viewport at the page's full height."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                 "scale": 1}})
    pathlib.Path(path).write_bytes(base64.b64decode(shot["data"]))


def load(url: str, screenshot_path: str | os.PathLike | None = None,
         window: tuple[int, int] = WINDOW) -> list[PageImage]:
    """Opens `url` (file:// or http://127.0.0.1) in headless Chromium and
    returns its images as loaded; with `screenshot_path`, saves the whole
    page there as a PNG. Skips (or fails on CI) without the browser."""
    require()
    with chromium(window) as driver:
        driver.get(url)
        loaded = images(driver)
        if screenshot_path is not None:
            screenshot(driver, screenshot_path)
    return loaded
