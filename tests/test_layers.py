"""The package's layers: the import-linter contracts in pyproject.toml hold (each layer imports
only from those below it, function-local imports included, and no import cycle), they would
catch an import that points upward or closes a cycle, and ``import gaussmix`` stays light."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gaussmix"
HEAVY = ("numba", "torch", "dask", "matplotlib", "PIL", "skimage", "starlette", "sklearn",
         "scipy", "pandas")

pytest.importorskip("importlinter")


def lint(source_root, config):
    """``lint-imports`` on the package under ``source_root`` with ``config``: (exit code,
    output)."""
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports; "
                           f"raise SystemExit(lint_imports(config_filename={str(config)!r}, "
                           "no_cache=True, no_logo=True))"],
                          env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_the_layers_and_acyclic_contracts_hold():
    code, output = lint(ROOT / "src", ROOT / "pyproject.toml")
    assert code == 0, output
    assert "2 kept, 0 broken" in output


@pytest.mark.parametrize("module, line, broken", [
    # a kernel that reaches for an estimator: upward
    ("_kernels/tiles.py", "from ..mixture import GaussianMixture", "Layers"),
    # mathematics that imports the fit (inside a function, as the cycles used to)
    ("_mathematics/algebra.py", "def _scores():\n    from .._fitting import inference",
     "Layers"),
    # two models that import each other
    ("io.py", "def _estimator():\n    from . import loading", "Layers"),
    # a cycle inside one layer
    ("_foundations/stats.py", "from . import validation", "No import cycle"),
])
def test_the_contracts_catch_an_upward_import_or_a_cycle(tmp_path, module, line, broken):
    copy = tmp_path / "src" / "gaussmix"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = copy / module
    target.write_text(target.read_text() + "\n\n" + textwrap.dedent(line) + "\n")
    if broken == "No import cycle":  # validation imports covariance; close the loop
        (copy / "_foundations" / "covariance.py").write_text(
            (copy / "_foundations" / "covariance.py").read_text() + "\nfrom . import stats\n")
    code, output = lint(tmp_path / "src", ROOT / "pyproject.toml")
    assert code != 0, output
    assert broken in output and "BROKEN" in output


def test_importing_gaussmix_imports_no_heavy_library():
    script = ("import sys, gaussmix; "
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_every_package_module_sits_in_a_layer():
    """A module added outside the contract's layers would escape it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = set()
    for contract in config["contracts"]:
        for layer in contract.get("layers", []):
            layered.update(name.strip() for name in layer.replace("|", ":").split(":"))
    top = {f"gaussmix.{p.stem if p.is_file() else p.name}" for p in PACKAGE.iterdir()
           if (p.suffix == ".py" and p.stem != "__init__")
           or (p.is_dir() and (p / "__init__.py").exists())}
    assert top - layered == set()
