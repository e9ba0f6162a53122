"""The studio page in a real browser: Playwright driving the system's Chromium (Debian's
``chromium`` package; Playwright's own browsers are never downloaded). Skipped, with the
reason, where no Chromium is installed.

With ``GAUSSMIX_STUDIO_SCREENSHOTS=docs/images`` the screenshots of the page (before and
after the sharpen slider moves) are written there, for the README.
"""

import io
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = next((path for path in (os.environ.get("GAUSSMIX_CHROMIUM"),
                                   shutil.which("chromium"), shutil.which("chromium-browser"))
                 if path), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get "
                                "install chromium); the browser test needs one")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from gaussmix.studio.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def picture_file(folder):
    from skimage import data
    from skimage.transform import resize

    path = folder / "astronaut.png"
    small = resize(data.astronaut(), (160, 160), anti_aliasing=True)
    from PIL import Image

    Image.fromarray((small * 255).round().astype(np.uint8)).save(path)
    return path


def save_screenshot(page, path):
    """The whole page as a PNG of 256 colours (a third of the bytes, for the README)."""
    from PIL import Image

    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    shot.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def test_upload_fit_and_move_the_sharpen_slider(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.wait_for_selector(".samples button img")
    shots = os.environ.get("GAUSSMIX_STUDIO_SCREENSHOTS")
    page.set_input_files("#file", str(picture_file(tmp_path)))
    page.fill("#k", "150")
    page.click("#fit")
    page.wait_for_selector("#progress:not([hidden])")
    page.wait_for_selector("#render-conditional-mean", timeout=180_000)
    painting = page.locator("#render-conditional-mean")
    page.wait_for_function("document.querySelectorAll('.card img').length === 7 && "
                           "[...document.querySelectorAll('.card img')].every(i => i.complete "
                           "&& i.naturalWidth > 0)")
    before_src = painting.get_attribute("src")
    before = painting.screenshot()
    if shots:
        save_screenshot(page, os.path.join(shots, "studio-before.png"))
    page.fill("#sharpen", "-1.2")  # a range input: exp(-1.2) = 0.30
    page.wait_for_function(
        "src => { const i = document.getElementById('render-conditional-mean'); "
        "return i.getAttribute('src') !== src && i.complete && i.naturalWidth > 0 && "
        "!i.classList.contains('busy'); }", arg=before_src, timeout=30_000)
    assert "sharpen=0.3012" in painting.get_attribute("src")
    assert page.locator("#sharpen-out").inner_text() == "0.30"
    after = painting.screenshot()
    if shots:
        save_screenshot(page, os.path.join(shots, "studio-after.png"))
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(before)).convert("RGB"), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(after)).convert("RGB"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1.0  # the painting changed
    assert page.locator("#model-link").get_attribute("href").endswith("/model.npz")
    mapped = page.locator("#render-density-mapped")
    mapped_src = mapped.get_attribute("src")
    knot = page.locator("#tone circle").nth(2)  # drag the third knot of the tone curve down
    box = knot.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 60, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "src => { const i = document.getElementById('render-density-mapped'); "
        "return i.getAttribute('src') !== src && i.complete && !i.classList.contains('busy'); }",
        arg=mapped_src, timeout=30_000)
    assert "tone=" in mapped.get_attribute("src")
    assert not errors, errors
    page.close()


def fit_sample(browser, server, sample, viewport=None, **fields):
    """A new page that fits a bundled sample with the given settings (ids of the page's
    inputs; True ticks a checkbox, a str of the mode selects it)."""
    page = browser.new_page(viewport=viewport)
    page.goto(server)
    page.wait_for_selector(".samples button img")
    page.click(f"button[data-sample={sample}]")
    for name, value in fields.items():
        if value is True:
            page.check(f"#{name}")
        elif name == "mode":
            page.select_option("#mode", value)
        else:
            page.fill(f"#{name}", value)
    page.click("#fit")
    return page


def test_a_bad_setting_shows_the_servers_sentence(server, browser):
    page = fit_sample(browser, server, "horse", k="0")
    page.wait_for_selector("#error:not([hidden])")
    assert "k must lie in [1, 5000]" in page.locator("#error").inner_text()
    page.close()


def test_black_and_white_settings_reach_the_fit(server, browser):
    page = fit_sample(browser, server, "horse", mode="bw", k="20", threshold="0.5",
                      keep_light=True)
    page.wait_for_selector("#render-density", timeout=120_000)
    summary = page.locator("#summary").inner_text()
    assert "black and white" in summary and "20 components" in summary
    # The light pixels of the horse are its paper: far more points than its ink.
    assert int(summary.split(" points")[0].split("·")[-1].replace(",", "")) > 80_000
    page.close()


def test_a_reload_finds_the_job_again(server, browser):
    page = fit_sample(browser, server, "coffee", k="30", max_pixels="4096")
    page.wait_for_selector("#render-conditional-mean", timeout=120_000)
    assert "#job=" in page.url
    page.reload()
    page.wait_for_selector("#render-conditional-mean", timeout=30_000)
    assert page.locator("#summary").inner_text().startswith("colour · 30 components")
    page.close()
    fresh = browser.new_page()
    fresh.goto(server + "#job=forgotten")
    fresh.wait_for_selector(".samples button img")
    fresh.wait_for_function("!location.hash")
    assert fresh.locator("#error").is_hidden()
    fresh.close()


def test_the_page_fits_a_phone_screen_after_a_fit(server, browser):
    """390 px wide: one column, no sideways scrolling, one render per row."""
    page = fit_sample(browser, server, "coffee", viewport={"width": 390, "height": 844},
                      k="30", max_pixels="4096")
    page.wait_for_function("document.querySelectorAll('.card img').length === 7",
                           timeout=120_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = [page.locator(f"#render-{name}").bounding_box()
             for name in ("conditional-mean", "samples")]
    assert boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"]  # stacked, not side by side
    page.close()
