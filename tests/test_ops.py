"""Each primitive of fastmlp.ops against values computed by hand, on NumPy and array-api-strict."""

import math

import array_api_strict
import numpy as np
import pytest

from fastmlp import ops

NAMESPACES = [pytest.param(np, id="numpy"), pytest.param(array_api_strict, id="array-api-strict")]


@pytest.fixture(params=NAMESPACES)
def xp(request):
    return request.param


def arr(xp, values, dtype="float64"):
    return xp.asarray(np.asarray(values, dtype=dtype).tolist(), dtype=getattr(xp, dtype))


def host(x):
    return np.asarray(x.tolist() if hasattr(x, "tolist") else x)


def test_relu_keeps_positives_zeroes_negatives(xp):
    assert host(ops.relu(arr(xp, [[-2.0, 0.0, 3.5]]))).tolist() == [[0.0, 0.0, 3.5]]


def test_relu_keeps_nan_so_divergence_is_seen():
    assert np.isnan(ops.relu(np.array([[np.nan, 1.0]]))[0, 0])


def test_relu_mask_is_the_step_function_zero_at_zero(xp):
    assert host(ops.relu_mask(arr(xp, [[-1.0, 0.0, 2.0]]))).tolist() == [[0.0, 0.0, 1.0]]


def test_affine_is_x_at_w_plus_b(xp):
    X = arr(xp, [[1.0, 2.0]])
    W = arr(xp, [[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    b = arr(xp, [0.5, -1.0, 0.0])
    # [1*1+2*2, 1*0+2*1, -1+1] + b
    assert host(ops.affine(X, W, b)).tolist() == [[5.5, 1.0, 0.0]]


def test_softmax_of_log_values_gives_proportions(xp):
    S = arr(xp, [[math.log(1.0), math.log(2.0), math.log(5.0)]])
    np.testing.assert_allclose(host(ops.softmax(S)), [[0.125, 0.25, 0.625]], rtol=1e-15)


def test_log_softmax_by_hand(xp):
    S = arr(xp, [[0.0, 0.0], [1.0, 3.0]])
    expected = [[-math.log(2.0)] * 2, [-math.log(1 + math.e**2), 2 - math.log(1 + math.e**2)]]
    np.testing.assert_allclose(host(ops.log_softmax(S)), expected, rtol=1e-14)


def test_softmax_of_a_huge_logit_is_exactly_one_hot(xp):
    assert host(ops.softmax(arr(xp, [[1000.0, 0.0, 0.0, 0.0]]))).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_cross_entropy_of_two_equal_huge_logits_is_log_2(xp):
    loss = ops.cross_entropy(arr(xp, [[1e8, 1e8]]), xp.asarray([1]))
    assert float(host(loss)) == pytest.approx(math.log(2.0), rel=1e-15)


def test_one_hot(xp):
    Y = ops.one_hot(xp.asarray([2, 0]), 3, xp.float64)
    assert host(Y).tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]


def test_cross_entropy_by_hand(xp):
    # P rows: [1/4, 3/4] and [1/2, 1/2]; labels 1 and 0: loss = -(log 3/4 + log 1/2) / 2
    S = arr(xp, [[0.0, math.log(3.0)], [2.0, 2.0]])
    loss = ops.cross_entropy(S, xp.asarray([1, 0]))
    assert float(host(loss)) == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, rel=1e-14)


def test_accuracy_takes_first_of_tied_maxima(xp):
    S = arr(xp, [[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 1.0]])
    # argmax with ties -> 0, 1, 0: labels 0, 2, 0 -> 2 of 3 right
    assert float(host(ops.accuracy(S, xp.asarray([0, 2, 0])))) == pytest.approx(2 / 3)


def test_xent_grad_is_p_minus_y_over_n(xp):
    S = arr(xp, [[0.0, math.log(3.0)], [2.0, 2.0]])
    d2 = ops.xent_grad(S, xp.asarray([1, 0]))
    np.testing.assert_allclose(host(d2), [[0.25 / 2, -0.25 / 2], [-0.5 / 2, 0.5 / 2]], rtol=1e-14)


def test_fused_contracts_agree_with_the_parts(xp):
    S = arr(xp, [[0.3, -1.0, 2.0], [1.0, 1.0, 1.0]])
    labels = xp.asarray([2, 1])
    loss, acc, d2 = ops.softmax_xent_grad(S, labels)
    assert float(host(loss)) == float(host(ops.cross_entropy(S, labels)))
    assert float(host(acc)) == 0.5
    assert host(d2).tolist() == host(ops.xent_grad(S, labels)).tolist()
    assert [float(host(v)) for v in ops.logits_loss_acc(S, labels)] == [float(host(loss)), 0.5]


def test_float32_stays_float32():
    S = np.array([[1.0, 2.0]], dtype=np.float32)
    for out in (ops.softmax(S), ops.log_softmax(S), ops.xent_grad(S, np.array([0])), ops.relu(S)):
        assert out.dtype == np.float32
