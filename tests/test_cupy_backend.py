"""The cupy backend's own code on the CPU: the real :class:`CupyBackend` and its graph replayer,
run on the test double of CuPy, nvmath-python and CUDA in ``cuda_double.py`` / ``nvmath_double.py``.

The double refuses what CUDA and nvmath refuse where the GPU path can go wrong (planning or a host
wait while a stream captures, waiting outside a capture for an event recorded inside it, a graph
touching memory its pool gave back, an epilogue's layout rules); the first tests check that it
does. The rest drive full fits through the fused products and CUDA-graph replay: graphs captured,
replayed and released; single-row and ragged batches; errors in the middle of a fit; refused
epilogues; out-of-memory. What only a card can tell (cuBLASLt's own refusals, the ReLU mask's
rule at exactly 0, speed) is in ``test_gpu.py`` and the GPU job's benchmark.
"""

import sys

import numpy as np
import pytest

from .cuda_double import CudaDouble, CUDARuntimeError
from .nvmath_double import pack, relu_aux_shape


@pytest.fixture
def gpu(monkeypatch):
    """The double, imported as cupy, cupyx, nvmath and array_api_compat.cupy; graph replay on."""
    double = CudaDouble()
    double.install(monkeypatch)
    monkeypatch.delenv("FASTMLP_CUDA_GRAPHS", raising=False)
    return double


# ------------------------------------------------------------------ the double refuses what CUDA refuses
def test_the_double_plans_only_outside_a_capture_and_frees_only_after_uncaptured_work(gpu):
    cupy, advanced = sys.modules["cupy"], sys.modules["nvmath"].linalg.advanced
    stream = cupy.cuda.Stream(non_blocking=True)
    a_host, b_host = np.arange(12.0).reshape(4, 3), np.ones((3, 2))
    a, b, c = cupy.asarray(a_host), cupy.asarray(b_host), cupy.zeros((4, 2), np.float64)
    with stream:
        plan = advanced.Matmul(a, b, c=c, beta=0.0, options={"inplace": True}, stream=stream)
        stream.begin_capture()
        with pytest.raises(CUDARuntimeError, match="cudaErrorCapturedEvent"):
            plan.plan(stream=stream)  # planning waits for the device
        stream.end_capture()
        plan.plan(stream=stream)
        stream.begin_capture()
        plan.execute(stream=stream)
        graph = stream.end_capture()
    assert not cupy.asnumpy(c).any()  # nothing ran while recording
    graph.launch(stream=stream)
    np.testing.assert_array_equal(cupy.asnumpy(c), a_host @ b_host)
    assert plan.last_compute_event.captured
    with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureIsolation"):
        plan.free()  # the workspace's stream would wait for the event recorded in the capture


def test_the_double_keeps_cupys_layouts_and_nvmaths_epilogue_rules(gpu):
    cupy, advanced = sys.modules["cupy"], sys.modules["nvmath"].linalg.advanced
    mask = cupy.empty((16, 1), np.uint8, order="F")
    assert mask.strides == (1, 16) and cupy.empty_like(mask).strides == (1, 1)  # both contiguous -> C order
    W, X, b = (cupy.asarray(v) for v in (np.eye(3, 24).T - 0.5, np.ones((3, 5)), np.linspace(-1, 1, 24)))
    S = np.asarray(cupy.asnumpy(W)) @ np.ones((3, 5)) + np.linspace(-1, 1, 24)[:, None]  # 24×5
    epilog = advanced.MatmulEpilog.RELU_AUX_BIAS
    for out, refused in ((cupy.empty((24, 5)), True), (cupy.empty((5, 24)).T, False)):  # C's layout is the result's
        plan = advanced.Matmul(W, X, c=out, beta=0.0, options={"inplace": True})
        if refused:
            with pytest.raises(RuntimeError, match="suitable algorithm"):
                plan.plan(epilog=epilog, epilog_inputs={"bias": b})
            continue
        plan.plan(epilog=epilog, epilog_inputs={"bias": b})
        _, aux = plan.execute()
        np.testing.assert_allclose(cupy.asnumpy(out), np.maximum(S, 0))
        assert aux["relu_aux"].shape == relu_aux_shape(24, 5) == (16, 5) and aux["relu_aux"].strides == (1, 16)
        np.testing.assert_array_equal(cupy.asnumpy(aux["relu_aux"]), pack(S > 0, (16, 5)))


def test_the_double_faults_on_memory_given_back_and_on_host_waits_in_a_capture(gpu):
    cupy = sys.modules["cupy"]
    stream, pool = cupy.cuda.Stream(non_blocking=True), cupy.cuda.MemoryPool()
    x = cupy.ones(4, np.float32)
    with cupy.cuda.using_allocator(pool.malloc), stream:
        stream.begin_capture()
        x += x * 2  # the temporary x * 2 comes from the pool and goes back to it at once
        graph = stream.end_capture()
    graph.launch(stream=stream)
    pool.free_all_blocks()  # as CuPy's pool does before retrying an allocation that failed
    with pytest.raises(CUDARuntimeError, match="cudaErrorIllegalAddress"):
        graph.launch(stream=stream)
    with stream:
        stream.begin_capture()
        with pytest.raises(CUDARuntimeError, match="cudaErrorStreamCaptureUnsupported"):
            float(x.sum())
        with pytest.raises(CUDARuntimeError, match="Invalidated"):
            stream.end_capture()
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(4, np.float32)  # CuPy refuses host arrays
