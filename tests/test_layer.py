"""affbench.Affine: the book's layer on every implementation."""

from __future__ import annotations

import numpy as np
import pytest

from affbench import Affine, reference, registry
from affbench.reference import numerical_gradient


def make(rng, shape, dtype="float64"):
    return rng.standard_normal(shape).astype(dtype)


def test_default_impl_is_numpy():
    layer = Affine(np.ones((2, 3)), np.zeros(3))
    assert layer.impl is registry.get("numpy")


def test_impl_object_is_accepted(impl, rng):
    W, b = make(rng, (4, 3)), make(rng, 3)
    layer = Affine(W, b, impl=impl)
    assert layer.impl is impl
    x = make(rng, (2, 4))
    np.testing.assert_allclose(layer.forward(x), x @ W + b, rtol=1e-12)


def test_unknown_impl_name(rng):
    with pytest.raises(KeyError, match="numpy"):
        Affine(np.ones((2, 3)), np.zeros(3), impl="nope")


@pytest.mark.parametrize("b_shape", ["(M,)", "(1, M)"])
def test_nd_input_forward_backward(impl_name, rng, b_shape):
    x = make(rng, (6, 2, 3, 4))
    W, b = make(rng, (24, 5)), make(rng, 5)
    if b_shape == "(1, M)":
        b = b.reshape(1, 5)
    dout = make(rng, (6, 5))
    layer = Affine(W, b, impl=impl_name)
    y = layer.forward(x)
    x2 = x.reshape(6, 24)
    np.testing.assert_allclose(y, x2 @ W + b.reshape(-1), rtol=1e-12, atol=1e-12)
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    rdx, rdW, rdb = reference.backward(x2, W, dout)
    np.testing.assert_allclose(dx.reshape(6, 24), rdx, rtol=1e-12, atol=1e-12)
    assert layer.dW.shape == W.shape
    np.testing.assert_allclose(layer.dW, rdW, rtol=1e-12, atol=1e-12)
    assert layer.db.shape == b.shape
    np.testing.assert_allclose(layer.db.reshape(-1), rdb, rtol=1e-12, atol=1e-12)


def test_one_d_input_is_a_batch_of_scalars(impl_name, rng):
    """The book's reshape(x.shape[0], -1): a 1-D x of length N is N samples of 1 feature."""
    W, b = make(rng, (1, 3)), make(rng, 3)
    layer = Affine(W, b, impl=impl_name)
    x = make(rng, 4)
    np.testing.assert_allclose(layer.forward(x), x[:, None] @ W + b, rtol=1e-12)
    assert layer.backward(np.ones((4, 3))).shape == (4,)


def test_weights_are_kept_by_reference(impl_name, rng):
    """The book's numerical_gradient perturbs W in place; the next forward must see it."""
    W, b = make(rng, (4, 3)), make(rng, 3)
    layer = Affine(W, b, impl=impl_name)
    assert layer.W is W and layer.b is b
    x = make(rng, (2, 4))
    y0 = layer.forward(x).copy()
    W[1, 2] += 1e-4
    y1 = layer.forward(x)
    np.testing.assert_allclose(y1 - y0, np.outer(x[:, 1], [0, 0, 1e-4]), atol=1e-12)
    b[0] += 1.0
    np.testing.assert_allclose(layer.forward(x)[:, 0], y1[:, 0] + 1.0, atol=1e-12)


def test_numerical_gradient_matches_backward(impl_name, rng):
    """The book's gradient check: central differences of L = sum(forward(x) * G)."""
    x = make(rng, (3, 2, 4))
    W, b = make(rng, (8, 5)), make(rng, 5)
    G = make(rng, (3, 5))
    layer = Affine(W, b, impl=impl_name)

    def loss():
        return float(np.sum(layer.forward(x) * G))

    num_W = numerical_gradient(loss, W)
    num_b = numerical_gradient(loss, b)
    num_x = numerical_gradient(loss, x)
    layer.forward(x)
    dx = layer.backward(G)
    for name, num, ana in (("dW", num_W, layer.dW), ("db", num_b, layer.db), ("dx", num_x, dx)):
        assert np.mean(np.abs(num - ana)) < 1e-7, name


@pytest.mark.parametrize(
    "x_dtype, w_dtype, expected",
    [
        ("float32", "float32", "float32"),
        ("float32", "float64", "float64"),
        ("float64", "float32", "float64"),
        ("int64", "float32", "float64"),
        ("int8", "float64", "float64"),
        ("uint16", "float32", "float64"),
        ("bool", "float32", "float64"),
        ("int32", "int32", "float64"),
        (">f4", "float32", "float32"),
        (">f8", ">f8", "float64"),
    ],
)
def test_dtype_promotion(impl_name, rng, x_dtype, w_dtype, expected):
    x = (rng.integers(0, 2, (3, 4)) if x_dtype == "bool" else rng.integers(-3, 4, (3, 4))).astype(x_dtype)
    W = rng.integers(-3, 4, (4, 2)).astype(w_dtype)
    b = np.ones(2, dtype=w_dtype)
    layer = Affine(W, b, impl=impl_name)
    y = layer.forward(x)
    assert y.dtype == np.dtype(expected)
    np.testing.assert_array_equal(y, x.astype(np.float64) @ W.astype(np.float64) + 1)  # exact on integers
    dx = layer.backward(np.ones((3, 2), dtype=np.int64))  # an integer dout is promoted too
    assert dx.dtype == layer.dW.dtype == layer.db.dtype == np.dtype(expected)
    np.testing.assert_array_equal(dx, np.ones((3, 2)) @ W.astype(np.float64).T)


def test_lists_are_accepted(impl_name):
    layer = Affine(np.eye(2), np.zeros(2), impl=impl_name)
    np.testing.assert_array_equal(layer.forward([[1, 2], [3, 4]]), [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(layer.backward([[1, 0], [0, 1]]), np.eye(2))


@pytest.mark.parametrize("bad", ["complex128", "complex64", "object", "<U2", "S1", "float16", "datetime64[s]"])
@pytest.mark.parametrize("where", ["x", "W", "b", "dout"])
def test_unsupported_dtypes_raise_type_error(impl_name, bad, where):
    def arr(shape, use_bad):
        if not use_bad:
            return np.ones(shape)
        if np.dtype(bad).kind in "US":
            return np.full(shape, "1", dtype=bad)
        return np.ones(shape).astype(bad) if np.dtype(bad).kind != "M" else np.zeros(shape, bad)

    W, b = arr((4, 2), where == "W"), arr(2, where == "b")
    if where in ("W", "b"):
        with pytest.raises(TypeError) as info:
            Affine(W, b, impl=impl_name)
    else:
        layer = Affine(W, b, impl=impl_name)
        if where == "x":
            with pytest.raises(TypeError) as info:
                layer.forward(arr((3, 4), True))
        else:
            layer.forward(np.ones((3, 4)))
            with pytest.raises(TypeError) as info:
                layer.backward(arr((3, 2), True))
    msg = str(info.value)
    assert where in msg and str(np.dtype(bad)) in msg


@pytest.mark.parametrize(
    "W_shape, b_shape, words",
    [((4,), (2,), ["W", "(4,)"]), ((4, 2, 1), (2,), ["W", "(4, 2, 1)"]), ((4, 2), (3,), ["b", "(3,)", "(4, 2)"]),
     ((4, 2), (2, 2), ["b", "(2, 2)"]), ((4, 2), (), ["b", "()"])],
)
def test_constructor_shape_errors(W_shape, b_shape, words):
    with pytest.raises(ValueError) as info:
        Affine(np.ones(W_shape), np.ones(b_shape))
    for w in words:
        assert w in str(info.value)


def test_constructor_type_errors():
    with pytest.raises(TypeError, match="W and b must be numpy arrays, got list and ndarray"):
        Affine([[1.0]], np.ones(1))
    with pytest.raises(TypeError, match="W is a masked array"):
        Affine(np.ma.masked_array(np.ones((2, 2)), mask=[[0, 1], [0, 0]]), np.ones(2))


def test_masked_input_is_refused_not_unmasked(impl_name):
    # np.asarray drops a mask silently: the masked entry would be computed with
    layer = Affine(np.ones((2, 2)), np.zeros(2), impl=impl_name)
    x = np.ma.masked_array(np.ones((3, 2)), mask=[[0, 1], [0, 0], [0, 0]])
    with pytest.raises(TypeError, match="x is a masked array"):
        layer.forward(x)
    layer.forward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="dout is a masked array"):
        layer.backward(np.ma.masked_array(np.ones((3, 2)), mask=True))


@pytest.mark.parametrize("bad", [None, "abc", [["a", "b"]], object()])
def test_non_numeric_input_is_a_type_error_naming_the_argument(impl_name, bad):
    layer = Affine(np.ones((2, 2)), np.zeros(2), impl=impl_name)
    with pytest.raises(TypeError, match="^x must be a numeric array"):
        layer.forward(bad)
    layer.forward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="^dout must be a numeric array"):
        layer.backward(bad)


def test_unknown_impl_name_is_a_value_error():
    with pytest.raises(ValueError, match="^unknown implementation 'nope'; known: .*numpy"):
        Affine(np.ones((2, 3)), np.zeros(3), impl="nope")


def test_forward_shape_errors(impl_name):
    layer = Affine(np.ones((6, 2)), np.zeros(2), impl=impl_name)
    with pytest.raises(ValueError, match=r"x of shape \(3, 5\) flattens to \(3, 5\), but W has shape \(6, 2\)"):
        layer.forward(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"x of shape \(3, 2, 2\) flattens to \(3, 4\)"):
        layer.forward(np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match=r"x must have a batch axis.*shape \(\)"):
        layer.forward(np.float64(1.0))


def test_backward_errors(impl_name):
    layer = Affine(np.ones((6, 2)), np.zeros(2), impl=impl_name)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((3, 2)))
    layer.forward(np.ones((3, 6)))
    for shape in [(3, 3), (2, 2), (3,), (3, 2, 1), (2, 3)]:
        with pytest.raises(ValueError) as info:
            layer.backward(np.ones(shape))
        assert "dout" in str(info.value) and str(shape) in str(info.value) and "(3, 2)" in str(info.value)


def test_huge_broadcast_input_is_refused_without_allocating(impl_name):
    layer = Affine(np.ones((2**20, 2)), np.zeros(2), impl=impl_name)
    x = np.broadcast_to(np.int8(1), (2**20, 2**10, 2**10))  # 2**40 int8 elements, 1 byte of memory
    with pytest.raises(ValueError, match="memory|limit") as info:
        layer.forward(x)
    assert "x" in str(info.value)


def test_layouts_do_not_matter(impl_name, rng):
    x = make(rng, (5, 8))
    W, b = make(rng, (8, 3)), make(rng, 3)
    ref = x @ W + b
    for xin in (np.asfortranarray(x), x[::-1][::-1], np.repeat(x, 2, axis=1)[:, ::2]):
        np.testing.assert_allclose(Affine(W, b, impl=impl_name).forward(xin), ref, rtol=1e-12)
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(Affine(W, b, impl=impl_name).forward(ro), ref, rtol=1e-12)
