"""Packages whose public names are imported on first use (PEP 562), so that importing the
package imports no heavy library."""

from __future__ import annotations

import importlib
import sys


def lazy_names(package, modules):
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``), where ``modules``
    maps each public name to the module, relative to the package, that defines it."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name):
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(modules))

    return __getattr__, __dir__


def require(module, extra, purpose):
    """Import ``module`` for an optional feature, or say in one sentence which extra to
    install: a ``ModuleNotFoundError`` naming the module (so that the command line names the
    extra too).

    Parameters
    ----------
    module : str
    extra : str
        The ``gaussmix[extra]`` that brings it.
    purpose : str
        What needs it, e.g. ``"MFCC features"``.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"{purpose} need {module.split('.')[0]}, which is not installed; install it with "
            f"pip install \"gaussmix[{extra}]\".", name=module.split(".")[0]) from None
