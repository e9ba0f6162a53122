"""The README's and the documentation pages' code, and the docstring examples, run as
written."""

import doctest
import importlib
import pathlib
import re
import runpy

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


# The painless guide's blocks run in order in tests/test_guide.py.
PAGES = [ROOT / "README.md", *sorted(
    page for page in (ROOT / "docs").rglob("*.md")
    if page.name != "painless.md" and "_build" not in page.parts)]
PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE,
                         ids=[str(page.relative_to(ROOT)) for page in PAGES_WITH_CODE])
def test_python_blocks_of_the_readme_and_the_pages_run(page, tmp_path, monkeypatch):
    """A page's blocks run in order, in one namespace, as a reader would type them."""
    monkeypatch.chdir(tmp_path)  # blocks may write files
    namespace = {}
    for index, block in enumerate(python_blocks(page)):
        exec(compile(block, f"{page.relative_to(ROOT)} block {index}", "exec"), namespace)


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("module", ["gaussmix.mixture", "gaussmix._estimator", "gaussmix.selection",
                                    "gaussmix.video.background", "gaussmix.video.tracking"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_quickstart_example_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    assert "converged after" in capsys.readouterr().out
