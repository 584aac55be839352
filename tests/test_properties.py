"""Property tests: every implementation agrees with the float64 reference (verify's tolerance
model) over random shapes, dtypes and memory layouts, and bit for bit on small integers."""

from __future__ import annotations

import numpy as np
import pytest
from _support import IMPL_NAMES, LAYOUTS, compare_with_reference, in_layout, n_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from affbench import Affine, reference, registry


def max_dim(name: str) -> int:
    return 12 if getattr(registry.get(name), "slow", False) else 40  # naive is pure Python


@st.composite
def problems(draw, name: str, integers: bool = False):
    hi = max_dim(name)
    N, K, M = (draw(st.integers(0, hi)) for _ in range(3))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if integers:
        make = lambda *s: rng.integers(-4, 5, size=s).astype(dtype)  # noqa: E731
    else:
        scale = draw(st.sampled_from([1.0, 1e-3, 1e3]))
        make = lambda *s: (rng.standard_normal(s) * scale).astype(dtype)  # noqa: E731
    x, W, b, dout = make(N, K), make(K, M), make(M), make(N, M)
    if draw(st.booleans()):
        b = b.reshape(1, M)
    x, W, b, dout = (in_layout(a, draw(st.sampled_from(LAYOUTS))) for a in (x, W, b, dout))
    return x, W, b, dout, dtype


@pytest.mark.parametrize("name", IMPL_NAMES)
def test_matches_reference(name):
    impl = registry.get(name)

    @settings(max_examples=n_examples(60), deadline=None)
    @given(problems(name))
    def check(problem):
        x, W, b, dout, dtype = problem
        before = [a.copy() for a in (x, W, b, dout)]
        y = impl.forward(x, W, b)
        dx, dW, db = impl.backward(x, W, dout)
        compare_with_reference({"y": y, "dx": dx, "dW": dW, "db": db}, x, W, b, dout, dtype)
        for a, c in zip((x, W, b, dout), before):
            np.testing.assert_array_equal(a, c)

    check()


@pytest.mark.parametrize("name", IMPL_NAMES)
def test_exact_on_small_integers(name):
    impl = registry.get(name)

    @settings(max_examples=n_examples(30), deadline=None)
    @given(problems(name, integers=True))
    def check(problem):
        x, W, b, dout, dtype = problem
        got = (impl.forward(x, W, b), *impl.backward(x, W, dout))
        ref = (reference.forward(x, W, b), *reference.backward(x, W, dout))
        for g, r in zip(got, ref):
            assert g.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(g, r.astype(dtype))  # exact arithmetic: bit-identical

    check()


@pytest.mark.parametrize("name", IMPL_NAMES)
def test_affine_nd_matches_reference(name):
    hi = min(max_dim(name), 10)

    @settings(max_examples=n_examples(25), deadline=None)
    @given(
        st.lists(st.integers(1, 4), min_size=0, max_size=3),
        st.integers(0, hi), st.integers(0, hi),
        st.sampled_from(["float32", "float64"]), st.sampled_from(LAYOUTS), st.integers(0, 2**32 - 1),
    )
    def check(feature_shape, N, M, dtype, layout, seed):
        rng = np.random.default_rng(seed)
        K = int(np.prod(feature_shape))
        x = in_layout(rng.standard_normal((N, *feature_shape)).astype(dtype), layout)
        W, b, dout = (rng.standard_normal(s).astype(dtype) for s in ((K, M), (M,), (N, M)))
        layer = Affine(W, b, impl=name)
        y = layer.forward(x)
        dx = layer.backward(dout)
        assert dx.shape == x.shape
        x2 = x.reshape(N, K)
        compare_with_reference({"y": y, "dx": dx.reshape(N, K), "dW": layer.dW, "db": layer.db}, x2, W, b, dout, dtype)

    check()
