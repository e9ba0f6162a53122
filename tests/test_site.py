"""The documentation site as a reader sees it: the front page, an API page and a gallery
page open in Chromium with their images. Runs on a built site (``.ci/run`` builds it:
``python -m sphinx -W --keep-going -b html docs docs/_build/html``); skipped without one."""

import pathlib

import pytest

from .browsers import NEEDS_CHROMIUM, launched_chromium

sync_api = pytest.importorskip("playwright.sync_api")

SITE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "_build" / "html"
pytestmark = [NEEDS_CHROMIUM, pytest.mark.skipif(
    not (SITE / "index.html").exists(),
    reason="the site is not built (python -m sphinx -W --keep-going -b html docs "
           "docs/_build/html)")]

PAGES = {
    "index.html": ("gaussmix", 0),
    "api/generated/gaussmix.GaussianMixture.html": ("gaussmix.GaussianMixture", 0),
    "auto_examples/plot_07_horse.html": ("Painting the horse with 500 Gaussians", 1),
    "auto_examples/index.html": ("Examples", 15),
    "guide/pictures.html": ("Pictures and the command line", 12),
    "cli.html": ("Command line", 0),
}


@pytest.fixture(scope="module")
def page():
    with launched_chromium(sync_api) as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        yield page
        page.close()


@pytest.mark.parametrize("name", PAGES)
def test_a_page_renders_with_its_images(page, name, tmp_path):
    title, least_images = PAGES[name]
    page.goto((SITE / name).as_uri())
    page.wait_for_load_state("load")
    assert page.locator("h1").first.inner_text().strip().rstrip("#").strip() == title
    images = page.eval_on_selector_all(
        "article img", "images => images.map(i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth])")
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken and len(images) >= least_images, (broken, len(images))
    page.screenshot(path=str(tmp_path / "page.png"))


def test_the_site_links_nothing_outside_it():
    """Offline: no page loads a script, a style sheet or a font from the network."""
    outside = []
    for html in SITE.rglob("*.html"):
        text = html.read_text(errors="replace")
        for marker in ('src="http', "href=\"http", "@import url(http"):
            start = 0
            while (at := text.find(marker, start)) >= 0:
                tag = text.rfind("<", 0, at)
                if text[tag:tag + 7] in ("<script", "<link r", "<link h") or "@import" in marker:
                    outside.append(f"{html.relative_to(SITE)}: {text[tag:at + 60]}")
                start = at + 1
    assert not outside, outside[:5]
