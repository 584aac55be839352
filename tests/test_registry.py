"""affbench.registry: names, get, register/unregister, and entry-point plug-ins."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import BUILTINS

from affbench import registry
from affbench.protocol import AffineImpl, KernelImpl


class _Plugin(KernelImpl):
    name = "test-plugin"

    def _forward(self, x, W, b):
        return x @ W + b

    def _backward(self, x, W, dout):
        return dout @ W.T, x.T @ dout, dout.sum(axis=0)


def test_builtins_are_registered_by_name():
    names = registry.names()
    for n in BUILTINS:
        assert n in names
    assert [n for n in names if n in BUILTINS] == sorted(BUILTINS)  # as installed metadata lists them: by name
    assert len(set(names)) == len(names)


def test_get_returns_an_impl_with_that_name():
    for n in registry.names():
        impl = registry.get(n)
        assert impl.name == n
        assert isinstance(impl, AffineImpl)
    assert [i.name for i in registry.all_impls()] == registry.names()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        registry.get("no-such-impl")
    msg = str(info.value)
    assert "no-such-impl" in msg
    for n in registry.names():
        assert n in msg
    assert isinstance(info.value, ValueError)  # a bad argument value, for Affine(impl=...)
    assert not msg.startswith(('"', "'"))  # printed as a sentence, not as KeyError's repr


def test_register_and_unregister():
    impl = registry.register(_Plugin)  # a class is instantiated
    try:
        assert isinstance(impl, _Plugin)
        assert registry.get("test-plugin") is impl
        assert registry.names()[-1] == "test-plugin"
        assert registry.register(impl) is impl  # the same object again is fine
        with pytest.raises(ValueError, match="already registered"):
            registry.register(_Plugin())
        other = registry.register(_Plugin(), replace=True)
        assert registry.get("test-plugin") is other
    finally:
        registry.unregister("test-plugin")
    assert "test-plugin" not in registry.names()
    registry.unregister("test-plugin")  # unregistering twice is harmless


def test_register_refuses_non_implementations():
    with pytest.raises(TypeError, match="AffineImpl"):
        registry.register(object())

    class NoName(_Plugin):
        name = ""

    with pytest.raises(ValueError, match="non-empty string name"):
        registry.register(NoName)


class _EP:
    """Stands in for importlib.metadata.EntryPoint."""

    def __init__(self, name, obj=None, exc=None):
        self.name, self._obj, self._exc = name, obj, exc

    def load(self):
        if self._exc:
            raise self._exc
        return self._obj


@pytest.fixture
def fresh_registry(monkeypatch):
    """Run _load() again with fake entry points; restore the real registry afterwards."""
    saved = dict(registry._registry)
    monkeypatch.setattr(registry, "_loaded", False)
    yield
    registry._registry.clear()
    registry._registry.update(saved)


def test_entry_points_are_loaded(monkeypatch, fresh_registry):
    class ClassPlugin(_Plugin):
        name = "ep-class"

    class FactoryMade(_Plugin):
        name = "ep-factory"

    instance = _Plugin()
    instance_name = "ep-instance"
    instance.name = instance_name
    eps = [_EP("a", ClassPlugin), _EP("b", lambda: FactoryMade()), _EP("c", instance)]
    seen_groups = []

    def fake_entry_points(group):
        seen_groups.append(group)
        return eps

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for good plug-ins
        names = registry.names()
    assert seen_groups == [registry.ENTRY_POINT_GROUP] == ["affbench.implementations"]
    for n in ("ep-class", "ep-factory", instance_name):
        assert n in names
    assert registry.get(instance_name) is instance
    x, W, b = np.ones((2, 3)), np.ones((3, 4)), np.ones(4)
    np.testing.assert_array_equal(registry.get("ep-class").forward(x, W, b), np.full((2, 4), 4.0))


def test_broken_plugin_only_warns(monkeypatch, fresh_registry):
    class Good(_Plugin):
        name = "ep-good"

    eps = [
        _EP("explodes", exc=ImportError("no module named foo")),
        _EP("not-an-impl", object()),  # called (it is callable? no: object() is not) -> TypeError
        _EP("factory-raises", lambda: 1 / 0),
        _EP("good", Good),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    with pytest.warns(UserWarning) as rec:
        names = registry.names()
    messages = " | ".join(str(w.message) for w in rec)
    for ep in ("explodes", "not-an-impl", "factory-raises"):
        assert repr(ep) in messages
    assert "no module named foo" in messages
    assert "ep-good" in names
    for n in BUILTINS:  # the built-ins survive a broken plug-in
        assert n in names


def test_plugin_clashing_with_a_builtin_is_refused_with_a_warning(monkeypatch, fresh_registry):
    class Clash(_Plugin):
        name = "numpy"

    monkeypatch.setattr(registry, "entry_points", lambda group: [_EP("clash", Clash)])
    with pytest.warns(UserWarning, match="already registered"):
        registry.names()
    assert not isinstance(registry.get("numpy"), Clash)


def test_builtins_come_from_the_entry_points_like_plugins():
    """One loading path: every built-in is an entry point of affbench's own metadata."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    for name in BUILTINS + ("numba-tiled",):
        assert eps[name].value.startswith("implementations."), eps.get(name)
        assert type(registry.get(name)) is eps[name].load()


def test_plugins_variable_names_objects_loaded_like_entry_points(monkeypatch, fresh_registry):
    monkeypatch.setenv(registry.PLUGINS_ENV, "test_registry:_Plugin, no_such_module_xyz:Thing")
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    try:
        with pytest.warns(UserWarning, match="no_such_module_xyz"):
            names = registry.names()
        assert "test-plugin" in names and type(registry.get("test-plugin")).__name__ == "_Plugin"
    finally:
        registry.unregister("test-plugin")
