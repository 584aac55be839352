"""Which implementations exist: declared, never discovered by accident.

Every implementation, built-in or third-party, is an entry point in the group
``affbench.implementations`` (the built-ins' are in pyproject.toml) whose object is either an
implementation instance or a zero-argument callable returning one (a class works): one loading
path, and the registry never imports ``implementations``. Local or test-only ones without
packaging are named in AFFBENCH_PLUGINS as "module:attr" and loaded the same way.

Optional implementations (the PyTorch and JAX peers) need packages outside affbench's own
dependencies. ``register_optional`` registers one when its packages can be found and otherwise
*declares* it: the name, why it is missing and the command that installs it. Declared names
are not in ``names()`` (nothing iterates over them), ``list`` shows them, ``run`` and ``verify``
skip them with that message, and ``get`` raises :class:`NotInstalled` (a KeyError) saying so.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable

from affbench.protocol import AffineImpl

ENTRY_POINT_GROUP = "affbench.implementations"
#: Comma-separated "module:attr" objects loaded after the entry points, as entry points are:
#: local or test-only implementations without packaging (e.g. tests/slowed_impl.py).
PLUGINS_ENV = "AFFBENCH_PLUGINS"
#: The implementation every other is compared with (speedups, crossovers, targets).
BASELINE = "numpy"

_registry: dict[str, AffineImpl] = {}
_unavailable: dict[str, "Unavailable"] = {}
_loaded = False


@dataclass(frozen=True)
class Unavailable:
    """An implementation that is declared but cannot run here: its packages are missing."""

    name: str
    reason: str  # e.g. "No module named 'torch'"
    install: str  # the command that installs what it needs

    @property
    def message(self) -> str:
        return f"{self.name}: not installed ({self.reason}); install with: {self.install}"


class UnknownImplementation(KeyError, ValueError):
    """``get`` of a name nothing declares. A KeyError (a failed lookup) and a ValueError (a bad
    ``impl=`` argument, as ``Affine`` users expect), printed without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0])


class NotInstalled(KeyError):
    """``get`` of a declared implementation whose packages are missing."""

    def __init__(self, info: Unavailable) -> None:
        super().__init__(info.message)
        self.info = info

    def __str__(self) -> str:  # KeyError would quote the message
        return self.info.message


def missing_module(module: str) -> str | None:
    """Why ``module`` cannot be imported here, or None when it can be found. Looks, does not
    import: importing PyTorch or JAX takes 1-2 s, which ``list`` and every worker would pay."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a None in sys.modules, a broken parent package
        return f"{type(exc).__name__}: {exc}"
    return None if spec is not None else f"No module named {module!r}"


def register_optional(impl: Any, *, requires: Iterable[str], install: str) -> AffineImpl | None:
    """Register ``impl`` if every module in ``requires`` can be found; otherwise declare it
    unavailable (name, the first missing module, ``install``) and return None. Declaring again
    keeps an already registered object of the same class (and its state: compiled functions)."""
    name = impl.name
    for module in requires:
        why = missing_module(module)
        if why is not None:
            _registry.pop(name, None)
            _unavailable[name] = Unavailable(name, why, install)
            return None
    _unavailable.pop(name, None)
    existing = _registry.get(name)
    if existing is not None and type(existing) is type(impl):
        return existing
    return register(impl)


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
    """Remove an implementation, or a declared one (tests use this to clean up after themselves)."""
    _registry.pop(name, None)
    _unavailable.pop(name, None)


def _add(obj: Any, *, keep: bool = True) -> AffineImpl | None:
    """Register what an entry point (or AFFBENCH_PLUGINS) names: an implementation instance, or
    a zero-argument callable returning one (a class works). One that ``requires`` packages
    outside affbench's dependencies goes through register_optional (declared when missing).
    ``keep``: an object of the same class already registered stays (with its compiled state)."""
    # a class is checked first: the protocol's attributes are on the class too
    impl = obj() if isinstance(obj, type) or (callable(obj) and not isinstance(obj, AffineImpl)) else obj
    requires = tuple(getattr(impl, "requires", ()) or ())
    if requires:
        return register_optional(impl, requires=requires, install=getattr(impl, "install", "-"))
    existing = _registry.get(getattr(impl, "name", None))
    if keep and existing is not None and type(existing) is type(impl):
        return existing
    return register(impl)


def _entry_points() -> list[Any]:
    """The group's entry points, affbench's own (the built-ins, by name as installed metadata
    lists them) first; then other packages'; then AFFBENCH_PLUGINS' "module:attr" objects."""
    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    eps.sort(key=lambda ep: 0 if getattr(getattr(ep, "dist", None), "name", None) == "affbench" else 1)
    for spec in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        eps.append(EntryPoint(name=spec, value=spec, group=ENTRY_POINT_GROUP))
    return eps


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in _entry_points():
        try:
            _add(ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not take the others down
            warnings.warn(f"affbench: could not load implementation {ep.name!r} ({getattr(ep, 'value', '?')}): "
                          f"{type(exc).__name__}: {exc}", stacklevel=2)


def reload() -> None:
    """Load the entry points again: an optional implementation whose packages appeared (or
    were hidden, as tests do) is registered (or declared) anew; the others keep their objects."""
    global _loaded
    _loaded = False
    _load()


def names() -> list[str]:
    """Registered implementation names, in registration order (built-ins first)."""
    _load()
    return list(_registry)


def get(name: str) -> AffineImpl:
    """The implementation called ``name``; NotInstalled for a declared one whose packages are
    missing; UnknownImplementation (a KeyError and a ValueError) listing the known names otherwise."""
    _load()
    try:
        return _registry[name]
    except KeyError:
        if name in _unavailable:
            raise NotInstalled(_unavailable[name]) from None
        raise UnknownImplementation(f"unknown implementation {name!r}; known: {', '.join(_registry)}") from None


def unavailable() -> dict[str, Unavailable]:
    """Declared implementations that cannot run here, by name (see register_optional)."""
    _load()
    return dict(_unavailable)


def split_available(requested: Iterable[str]) -> tuple[list[str], list[Unavailable]]:
    """Names that can run, and the declared-but-missing ones among ``requested``."""
    _load()
    names = list(requested)
    return [n for n in names if n not in _unavailable], [_unavailable[n] for n in names if n in _unavailable]


def all_impls() -> list[AffineImpl]:
    _load()
    return list(_registry.values())
