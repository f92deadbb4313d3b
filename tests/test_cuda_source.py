"""The cupy backend's CUDA code, compiled for the CPU and checked against the generic steps.

No GPU is needed: the row kernel's source is compiled with the host C++ compiler, with the CUDA
built-ins (``__global__``, ``blockIdx``, ...) defined for one thread per call, and run on each row;
each element-wise kernel body is compiled into a function that takes its inputs by value and its
outputs by reference, as CuPy binds them, and run on every element. This checks the kernels'
arithmetic (stable log-sum-exp, first argmax, d2, NaN through ReLU, the momentum update); the GPU
job checks them on a device.
"""

import shutil
import subprocess

import numpy as np
import pytest

from fastmlp import ops
from fastmlp.backends._cupy_kernels import ROW_SOFTMAX_SOURCE

COMPILER = shutil.which("g++") or shutil.which("c++")

# every harness defines run<T>(in, out, rows, columns); the input file starts with three int64:
# rows, columns and the bytes per element (4: float, 8: double)
MAIN = r"""
int main(int argc, char** argv) {
    FILE* in = fopen(argv[1], "rb");
    FILE* out = fopen(argv[2], "wb");
    long header[3];
    if (fread(header, sizeof(long), 3, in) != 3) return 1;
    int status = header[2] == 4 ? run<float>(in, out, header[0], header[1]) : run<double>(in, out, header[0], header[1]);
    fclose(out);
    return status;
}
"""


@pytest.fixture(scope="module")
def build_folder(tmp_path_factory):
    if COMPILER is None:
        pytest.skip("no host C++ compiler (g++) to compile the CUDA source for the CPU")
    return tmp_path_factory.mktemp("cuda_source")


def build(folder, name, harness):
    """Compile ``harness`` + MAIN; returns run(rows, columns, itemsize, payload bytes) -> output bytes."""
    (folder / f"{name}.cpp").write_text(harness + MAIN)
    subprocess.run(
        [COMPILER, "-O1", "-std=c++14", "-o", str(folder / name), str(folder / f"{name}.cpp")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )

    def run(rows, columns, itemsize, payload):
        header = np.array([rows, columns, itemsize], np.int64).tobytes()
        (folder / f"{name}.in").write_bytes(header + payload)
        subprocess.run(
            [str(folder / name), str(folder / f"{name}.in"), str(folder / f"{name}.out")], check=True, timeout=60
        )
        return (folder / f"{name}.out").read_bytes()

    return run


HARNESS = r"""
#include <cmath>
#include <cstdio>
#include <vector>
using std::exp;
using std::log;
struct Dim { int x; };
static Dim blockDim = {1}, blockIdx = {0}, threadIdx = {0};
#define __global__
%(source)s
template <typename T> int run(FILE* in, FILE* out, long N, long K) {
    std::vector<T> S(N * K), d2(N * K);
    std::vector<long long> labels(N);
    std::vector<double> loss(N), hit(N);
    if (fread(S.data(), sizeof(T), N * K, in) != (size_t)(N * K)) return 1;
    if (fread(labels.data(), sizeof(long long), N, in) != (size_t)N) return 1;
    for (int n = 0; n < N; ++n) {
        blockIdx.x = n;
        row_softmax_xent<T>(S.data(), labels.data(), (int)N, (int)K, 1, d2.data(), loss.data(), hit.data());
    }
    fwrite(d2.data(), sizeof(T), N * K, out);
    fwrite(loss.data(), sizeof(double), N, out);
    fwrite(hit.data(), sizeof(double), N, out);
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel(build_folder):
    run_binary = build(build_folder, "row_kernel", HARNESS % {"source": ROW_SOFTMAX_SOURCE})

    def run(S, labels):
        N, K = S.shape
        raw = run_binary(N, K, S.itemsize, np.ascontiguousarray(S).tobytes() + labels.astype(np.int64).tobytes())
        d2 = np.frombuffer(raw[: N * K * S.itemsize], S.dtype).reshape(N, K)
        rest = np.frombuffer(raw[N * K * S.itemsize :], np.float64)
        return d2, rest[:N], rest[N:]

    return run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["random", "ties", "huge"])
def test_row_kernel_matches_the_generic_math(kernel, dtype, case):
    rng = np.random.default_rng(5)
    S = {
        "random": rng.normal(0, 4, (37, 10)),
        "ties": np.tile([1.0, 3.0, 3.0, 0.0], (6, 1)),
        "huge": rng.choice([-1e4, 1e4, 0.0], size=(20, 10)),
    }[case].astype(dtype)
    labels = np.arange(len(S)) % S.shape[1]
    d2, row_loss, row_hit = kernel(S, labels)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(row_loss.mean(), float(ops.cross_entropy(S, labels)), rtol=tol, atol=tol)
    assert row_hit.sum() == np.sum(np.argmax(S, axis=1) == labels)  # first maximum on ties
    assert row_hit.mean() == pytest.approx(float(ops.accuracy(S, labels)), rel=1e-6)
    np.testing.assert_allclose(d2, ops.xent_grad(S, labels), rtol=tol, atol=tol / len(S))
    assert np.isfinite(d2).all() and np.isfinite(row_loss).all()


ELEMENTWISE_HARNESS = r"""
#include <cstdio>
#include <vector>
template <typename T> void body(%(params)s) { %(operation)s }
template <typename T> int run(FILE* in, FILE* out, long n, long) {
    std::vector<std::vector<T>> arrays(%(count)d, std::vector<T>(n));
    for (auto& a : arrays) if (fread(a.data(), sizeof(T), n, in) != (size_t)n) return 1;
    for (long i = 0; i < n; ++i) body<T>(%(call)s);
    for (int k = %(n_in)d; k < %(count)d; ++k) fwrite(arrays[k].data(), sizeof(T), n, out);
    return 0;
}
"""


def elementwise(folder, name):
    """Compile one ElementwiseKernel body the way CuPy binds it: inputs by value, outputs by reference."""
    from fastmlp.backends._cupy_kernels import ELEMENTWISE

    inputs, outputs, operation = ELEMENTWISE[name]
    names_in = [p.split()[1] for p in inputs.split(",")]
    names_out = [p.split()[1] for p in outputs.split(",")]
    params = [f"const T {n}" for n in names_in] + [f"T& {n}" for n in names_out]
    call = [f"arrays[{k}][i]" for k in range(len(names_in) + len(names_out))]
    source = ELEMENTWISE_HARNESS % {
        "params": ", ".join(params),
        "operation": operation,
        "call": ", ".join(call),
        "count": len(call),
        "n_in": len(names_in),
    }
    run_binary = build(folder, name, source)

    def run(*arrays):
        dtype = arrays[0].dtype
        payload = b"".join(np.ascontiguousarray(np.broadcast_to(a, arrays[0].shape), dtype).tobytes() for a in arrays)
        flat = np.frombuffer(run_binary(arrays[0].size, 1, dtype.itemsize, payload), dtype)
        return [part.reshape(arrays[0].shape) for part in np.split(flat, len(names_out))]

    return run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_bodies_match_the_generic_steps(build_folder, dtype):
    from fastmlp.backends import get_backend

    generic = get_backend("numpy")
    rng = np.random.default_rng(6)
    S = rng.normal(0, 1, (13, 7)).astype(dtype)
    S[0, 0] = np.nan
    b = rng.normal(0, 1, 7).astype(dtype)
    (relu,) = elementwise(build_folder, "bias_relu")(np.broadcast_to(b, S.shape), S.copy())
    np.testing.assert_array_equal(relu, np.maximum(S + b, 0))  # NaN stays NaN (assert_array_equal matches NaNs)

    A = np.maximum(rng.normal(0, 1, (13, 7)), 0).astype(dtype)
    G = rng.normal(0, 1, (13, 7)).astype(dtype)
    (masked,) = elementwise(build_folder, "relu_backward")(A, G.copy())
    np.testing.assert_array_equal(masked, G * (A > 0))

    (biased,) = elementwise(build_folder, "add_bias")(np.broadcast_to(b, S.shape), S.copy())
    np.testing.assert_array_equal(biased, S + b)  # the output layer's bias after its product

    theta, v, g = (rng.normal(0, 1, 50).astype(dtype) for _ in range(3))
    lr, mu = np.asarray(0.1, dtype), np.asarray(0.9, dtype)
    new_theta, new_v = elementwise(build_folder, "momentum")(
        g, np.broadcast_to(lr, g.shape), np.broadcast_to(mu, g.shape), theta.copy(), v.copy()
    )
    ref_theta, ref_v = generic.momentum_update(theta.copy(), v.copy(), g.copy(), 0.1, 0.9)
    tol = 1e-6 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(new_v, ref_v, rtol=tol)
    np.testing.assert_allclose(new_theta, ref_theta, rtol=tol, atol=tol)
