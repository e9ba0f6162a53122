"""Debian's Chromium, driven by Playwright by its path (Playwright's own browsers are never
downloaded): where it is, and a browser for a test module."""

import contextlib
import os
import shutil

import pytest

CHROMIUM = next((path for path in (os.environ.get("GAUSSMIX_CHROMIUM"),
                                   shutil.which("chromium"), shutil.which("chromium-browser"))
                 if path), None)
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get "
                                    "install chromium); the browser tests need one")


@contextlib.contextmanager
def launched_chromium(sync_api):
    """A headless Chromium (``sync_api``: Playwright's), closed on leaving."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()
