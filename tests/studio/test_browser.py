"""The studio page in a real browser: Playwright driving the system's Chromium (Debian's
``chromium`` package; Playwright's own browsers are never downloaded). Skipped, with the
reason, where no Chromium is installed.

With ``GAUSSMIX_STUDIO_SCREENSHOTS=docs/images`` the screenshots of the page (before and
after the sharpen slider moves) are written there, for the README.
"""

import io
import os

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from ..browsers import NEEDS_CHROMIUM, launched_chromium  # noqa: E402
from .servers import running_server  # noqa: E402

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def server():
    from gaussmix.studio.app import create_app

    with running_server(create_app()) as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser():
    with launched_chromium(sync_api) as chromium:
        yield chromium


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


def test_a_bad_setting_shows_the_servers_sentence_with_the_fields_label(server, browser):
    page = fit_sample(browser, server, "horse", k="0")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").inner_text() == "Components must lie in [1, 5000], got '0'."
    assert page.locator("#k").get_attribute("aria-invalid") == "true"
    page.fill("#k", "")
    page.fill("#color_scale", "0")
    page.click("#fit")
    page.wait_for_function("document.getElementById('error').textContent.startsWith('Colour')")
    assert page.locator("#error").inner_text().startswith("Colour scale must lie in [0.001,")
    assert page.locator("#k").get_attribute("aria-invalid") is None
    page.close()


@pytest.fixture(scope="module")
def small_server():
    """A server that takes uploads of 20 kB at most."""
    from gaussmix.studio.app import create_app

    with running_server(create_app(max_upload_bytes=20_000)) as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("name, content, words", [
    ("notes.txt", b"not a picture at all", "not a picture that can be read"),
    ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not a picture that can be read"),
    ("big.png", None, "The upload is over 0.0191 MB"),
])
def test_a_file_the_server_would_refuse_is_refused_before_uploading(small_server, browser,
                                                                    tmp_path, name, content,
                                                                    words):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.method))
    page.goto(small_server)
    page.wait_for_selector(".samples button img")
    path = tmp_path / name
    if content is None:
        from PIL import Image

        noise = np.random.RandomState(0).randint(0, 255, (120, 120, 3)).astype(np.uint8)
        Image.fromarray(noise).save(path)
        assert path.stat().st_size > 20_000
    else:
        path.write_bytes(content)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#error:not([hidden])")
    assert words in page.locator("#error").inner_text()
    assert page.locator("#fit").is_disabled()
    assert page.locator("#drop img").count() == 0  # no broken picture shown
    assert "POST" not in requests
    page.close()


def slider_state(page):
    return page.evaluate("""() => ({
        sharpen: document.getElementById('sharpen-out').textContent,
        peak: document.getElementById('peak').value,
        tone: state.tone.map(k => k.map(v => v.toFixed(3)).join(':')).join(','),
        painting: document.getElementById('render-conditional-mean')?.getAttribute('src')})""")


def test_a_cancelled_fit_keeps_the_gallery_and_a_new_one_resets_the_controls(server, browser):
    errors = []
    page = fit_sample(browser, server, "coffee", k="30", max_pixels="4096")
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.wait_for_selector("#render-conditional-mean", timeout=120_000)
    first = page.url.split("#job=")[1]
    defaults = slider_state(page)
    assert defaults["sharpen"] == "1.00" and "?" not in defaults["painting"]
    page.fill("#sharpen", "-1.2")
    page.wait_for_function("document.getElementById('render-conditional-mean')"
                           ".getAttribute('src').includes('sharpen=0.3012')")
    moved = slider_state(page)
    # A long fit, cancelled: the gallery and its controls stay as they were.
    page.click("button[data-sample=astronaut]")
    page.fill("#k", "300")
    page.fill("#max_iter", "1000")
    page.fill("#max_pixels", "")
    page.click("#fit")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('fitting')",
                           timeout=60_000)
    assert page.locator("#result").is_visible()  # the earlier gallery, while the new one fits
    # No broken picture before the first preview: hidden until it has one.
    assert page.evaluate("(() => { const p = document.getElementById('preview'); "
                         "return p.hidden || p.hasAttribute('src'); })()")
    page.click("#cancel")
    page.wait_for_selector("#progress", state="hidden", timeout=30_000)
    assert page.locator("#error").is_hidden() and page.locator("#cancel").is_hidden()
    assert page.url.endswith(f"#job={first}") and slider_state(page) == moved
    assert not page.locator("#fit").is_disabled()
    # Another picture fitted: its gallery comes with the controls at its renders' settings.
    page.click("button[data-sample=chelsea]")
    page.fill("#k", "30")
    page.fill("#max_iter", "20")
    page.fill("#max_pixels", "4096")
    page.click("#fit")
    page.wait_for_function(f"!location.hash.endsWith('{first}') && "
                           "!document.getElementById('result').hidden && "
                           "document.getElementById('summary').textContent.includes('30 comp')",
                           timeout=120_000)
    page.wait_for_function("!location.hash.endsWith('" + first + "') && "
                           "document.getElementById('render-conditional-mean')"
                           ".getAttribute('src').includes(location.hash.slice(5))",
                           timeout=120_000)
    fresh = slider_state(page)
    assert {k: fresh[k] for k in ("sharpen", "peak", "tone")} == \
        {k: defaults[k] for k in ("sharpen", "peak", "tone")}
    assert not errors, errors  # the favicon too was found
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
