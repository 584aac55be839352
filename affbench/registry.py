"""Which implementations exist: declared, never discovered by accident.

Built-ins register themselves when ``implementations`` is imported; third-party packages
declare an entry point in the group ``affbench.implementations`` whose object is either an
implementation instance or a zero-argument callable returning one (a class works).
"""

from __future__ import annotations

import importlib
import os
import warnings
from importlib.metadata import entry_points
from typing import Any

from affbench.protocol import AffineImpl

ENTRY_POINT_GROUP = "affbench.implementations"
#: Comma-separated modules imported after the built-ins, registering themselves as the built-ins
#: do: local or test-only implementations without packaging (e.g. tests/slowed_impl.py).
PLUGINS_ENV = "AFFBENCH_PLUGINS"
#: The implementation every other is compared with (speedups, crossovers, targets).
BASELINE = "numpy"

_registry: dict[str, AffineImpl] = {}
_loaded = False


def register(impl: Any, *, replace: bool = False) -> AffineImpl:
    """Add an implementation (an instance, or a class that is instantiated)."""
    if isinstance(impl, type):
        impl = impl()
    if not isinstance(impl, AffineImpl):
        raise TypeError(f"{impl!r} does not follow the AffineImpl protocol (name, forward, backward)")
    name = impl.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"implementation {impl!r} needs a non-empty string name")
    if name in _registry and not replace and _registry[name] is not impl:
        raise ValueError(f"an implementation named {name!r} is already registered: {_registry[name]!r}")
    _registry[name] = impl
    return impl


def unregister(name: str) -> None:
    """Remove an implementation (tests use this to clean up after themselves)."""
    _registry.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("implementations")
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - named, and the built-ins stay usable
            warnings.warn(f"affbench: could not import {module!r} from {PLUGINS_ENV}: {type(exc).__name__}: {exc}",
                          stacklevel=2)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            register(obj() if callable(obj) and not isinstance(obj, AffineImpl) else obj)
        except Exception as exc:  # a broken plug-in must not take the built-ins down
            warnings.warn(f"affbench: could not load implementation entry point {ep.name!r}: {exc}", stacklevel=2)


def names() -> list[str]:
    """Registered implementation names, in registration order (built-ins first)."""
    _load()
    return list(_registry)


def get(name: str) -> AffineImpl:
    """The implementation called ``name``; KeyError listing the known names otherwise."""
    _load()
    try:
        return _registry[name]
    except KeyError:
        raise KeyError(f"unknown implementation {name!r}; known: {', '.join(_registry)}") from None


def all_impls() -> list[AffineImpl]:
    _load()
    return list(_registry.values())
