"""The painless guide's examples run, in order, as written (docs/guide/painless.md)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_painless_guide_examples_run():
    text = (ROOT / "docs" / "guide" / "painless.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 10
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"painless.md block {i}", "exec"), namespace)
