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
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp.backends._cuda_graphs import GraphCaptureWarning, GraphReplayer
from fastmlp.errors import DeviceMemoryError, HostMemoryError

from .cuda_double import CudaDouble, CUDARuntimeError
from .nvmath_double import pack, relu_aux_shape

ROWS, HIDDEN = 300, 16


@pytest.fixture
def gpu(monkeypatch):
    """The double, imported as cupy, cupyx, nvmath and array_api_compat.cupy; graph replay on."""
    double = CudaDouble()
    double.install(monkeypatch)
    monkeypatch.delenv("FASTMLP_CUDA_GRAPHS", raising=False)
    return double


@pytest.fixture(scope="module")
def start():
    return fastmlp.MLP(784, HIDDEN, 10, seed=1).params


def fit(notmnist, start, *, rows=ROWS, epochs=6, batch_size=None, backend="cupy", **settings):
    (X, y), (Xv, yv) = notmnist.train, notmnist.valid
    net = fastmlp.MLP.from_params(start, backend=backend, **settings)
    history = net.fit(X[:rows], y[:rows], Xv[:100], yv[:100], epochs=epochs, batch_size=batch_size)
    return net, history


def fit_recording_warnings(*args, **kwargs):
    """fit(...) and the messages of every warning it gave (a failed capture warns)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net, history = fit(*args, **kwargs)
    return net, history, [str(w.message) for w in caught]


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


# ------------------------------------------------------------------ the replayer
def test_the_graph_replayer_runs_each_signature_eagerly_once_captures_once_then_only_launches(gpu):
    cupy = sys.modules["cupy"]
    stream = cupy.cuda.Stream(non_blocking=True)
    seen = []

    def step(array, lr):
        seen.append((array.data.ptr, "captured" if stream.is_capturing() else "eager"))
        array += lr  # device work: recorded while capturing, run at every launch
        return {"metrics": array}

    replay = GraphReplayer(step, cupy, stream)
    first, second = cupy.zeros(4, np.float32), cupy.zeros(4, np.float32)
    outputs = [replay(a, 1.0) for a in (first, second, first, second, first, second, first)]
    assert [when for _, when in seen] == ["eager", "eager", "captured", "captured"]
    assert [address for address, _ in seen] == [first.data.ptr, second.data.ptr] * 2
    assert gpu.launches == 5 and replay.counts.captured == 2 and replay.counts.replays == 3
    assert cupy.asnumpy(first).tolist() == [4.0] * 4 and cupy.asnumpy(second).tolist() == [3.0] * 4
    assert outputs[4] is outputs[2] and outputs[6] is outputs[2] and outputs[5] is outputs[3]
    replay(first, 0.5)  # another learning rate is another signature: eager first
    assert seen[-1] == (first.data.ptr, "eager") and cupy.asnumpy(first).tolist() == [4.5] * 4


def test_a_step_that_refuses_capture_runs_eagerly_from_then_on_with_one_warning(gpu):
    cupy = sys.modules["cupy"]
    stream = cupy.cuda.Stream(non_blocking=True)
    calls = []

    def step(array):
        calls.append("captured" if stream.is_capturing() else "eager")
        array += float(array.sum())  # a host read waits for the device: refused while capturing
        return array

    replay = GraphReplayer(step, cupy, stream)
    array = cupy.ones(2, np.float32)
    replay(array)
    with pytest.warns(GraphCaptureWarning, match="cudaErrorStreamCaptureUnsupported"):
        assert replay(array) is array
    for _ in range(3):
        assert replay(array) is array
    assert calls == ["eager", "captured", "eager", "eager", "eager", "eager"]
    assert not stream.is_capturing() and replay.counts.fallbacks == [replay.fallback_reason]
    assert "Invalidated" not in replay.fallback_reason  # the step's own error, not the abandoned capture's


def test_what_a_step_allocates_while_recorded_lives_as_long_as_its_graph(gpu):
    cupy = sys.modules["cupy"]
    stream = cupy.cuda.Stream(non_blocking=True)

    def step(array):
        array += array * 2  # the temporary array * 2 is written by every launch
        return array

    replay = GraphReplayer(step, cupy, stream)
    array = cupy.ones(3, np.float32)
    for _ in range(2):  # eager, then captured and launched
        replay(array)
    for pool in gpu.pools:
        pool.free_all_blocks()  # an allocation that failed and was retried elsewhere
    replay(array)
    assert cupy.asnumpy(array).tolist() == [27.0] * 3


# ------------------------------------------------------------------ full fits on the double
def test_a_fit_long_enough_to_capture_replays_its_graphs_releases_them_and_matches_numpy(gpu, notmnist, start):
    net, history, warned = fit_recording_warnings(notmnist, start, epochs=6)
    assert warned == []
    backend = net._backend
    assert backend.graphs.captured == 2 and backend.graphs.replays == 2 and backend.graphs.fallbacks == []
    assert net.backend_facts["unfused"] == "none" and net.backend_facts["cuda_graphs"] == "on"
    assert gpu.plans and all(not plan.valid_state for plan in gpu.plans)  # released: every plan freed
    assert gpu.plans_made_while_capturing == []
    reference, reference_history = fit(notmnist, start, epochs=6, backend="numpy")
    for name in start:
        np.testing.assert_allclose(net.params[name], reference.params[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(history.valid_loss, reference_history.valid_loss, rtol=1e-5)


#: rows and batch size giving ragged mini-batches (NumPy's array_split: 84, 83, 83 rows)
RAGGED = {"rows": 250, "batch_size": 100}


@pytest.mark.parametrize("batches", [{}, RAGGED], ids=["full-batch", "mini-batch-ragged"])
def test_graph_replay_gives_the_eager_weights_bit_for_bit(gpu, notmnist, start, batches):
    runs = [fit(notmnist, start, epochs=5, cuda_graphs=setting, **batches) for setting in (False, None)]
    (eager, eager_history), (replayed, replayed_history) = runs
    assert replayed._backend.graphs.replays > 0 and eager._backend.graphs.captured == 0
    for name in start:
        np.testing.assert_array_equal(replayed.params[name], eager.params[name], err_msg=name)
    assert replayed_history.train_loss == eager_history.train_loss
    assert replayed_history.valid_acc == eager_history.valid_acc


@pytest.mark.parametrize("rows, batch_size", [(6, 1), (1, None)], ids=["batches-of-one-row", "one-row-full-batch"])
def test_single_row_batches_keep_their_plans_and_their_graphs(gpu, notmnist, start, rows, batch_size):
    net, _, warned = fit_recording_warnings(notmnist, start, rows=rows, epochs=5, batch_size=batch_size)
    assert warned == []
    assert net.backend_facts["unfused"] == "none" and net._backend.graphs.fallbacks == []
    assert net._backend.graphs.replays > 0 and gpu.plans_made_while_capturing == []


def test_ragged_batches_without_graphs_make_their_plans_in_the_first_epoch_only(gpu, notmnist, start):
    plans = []
    for epochs in (1, 4):
        before = len(gpu.plans)
        fit(notmnist, start, epochs=epochs, cuda_graphs=False, **RAGGED)
        plans.append(len(gpu.plans) - before)
    assert plans[0] == plans[1], f"plans made in 1 epoch: {plans[0]}, in 4 epochs: {plans[1]}"


def test_a_pool_giving_its_free_blocks_back_while_graphs_replay_leaves_their_memory_alone(gpu, notmnist, start):
    def pools_give_back(launch):
        if launch == 3:  # both graphs captured; CuPy does this before retrying an allocation that failed
            for pool in gpu.pools:
                pool.free_all_blocks()

    gpu.before_launch = pools_give_back
    history = fit(notmnist, start, epochs=6)[1]
    undisturbed_history = fit(notmnist, start, epochs=6)[1]
    assert history.train_loss == undisturbed_history.train_loss and gpu.launches == 8


def test_ctrl_c_while_graphs_replay_reaches_the_user_and_the_plans_are_freed(gpu, notmnist, start):
    def interrupt(launch):
        if launch == 3:
            raise KeyboardInterrupt

    gpu.before_launch = interrupt
    with pytest.raises(KeyboardInterrupt):
        fit(notmnist, start, epochs=6)
    assert gpu.plans and all(not plan.valid_state for plan in gpu.plans)


def test_a_device_fault_mid_fit_is_the_error_raised_even_when_the_release_fails_too(gpu, notmnist, start):
    def fault(launch):
        if launch == 3:
            gpu.fault()  # sticky, as after an illegal address: the release's own calls fail as well

    gpu.before_launch = fault
    with (
        pytest.raises(CUDARuntimeError, match="cudaErrorIllegalAddress") as raised,
        pytest.warns(UserWarning, match="releasing the GPU's memory after CUDARuntimeError failed too"),
    ):
        fit(notmnist, start, epochs=6)
    assert raised.value is gpu.faults[0] and len(gpu.faults) > 1


def test_no_plan_is_made_while_a_graph_is_recorded_and_that_is_no_refused_epilogue(gpu):
    backend = fastmlp.get_backend("cupy")
    X, W1, b1 = (backend.asarray(np.ones(shape), np.float32) for shape in ((5, 3), (3, 4), (4,)))
    with backend._stream:
        backend._stream.begin_capture()
        with pytest.raises(RuntimeError, match=r"plan .* would be made while a CUDA graph is recorded"):
            backend.matmul(X, W1, workspace="first")
        with pytest.raises(RuntimeError, match="would be made while a CUDA graph is recorded"):
            backend.hidden_layer(X, W1, b1, workspace="first")  # the fused product; the replayer's business
        backend._stream.end_capture()
    assert gpu.plans == [] and gpu.plans_made_while_capturing == [] and backend.unfused == {}


# ------------------------------------------------------------------ refusals and reports
@pytest.mark.parametrize(
    "epilogue, product", [("RELU_AUX_BIAS", "hidden_layer"), ("BIAS", "affine"), ("DRELU_BGRAD", "hidden_backward")]
)
def test_an_epilogue_cublaslt_refuses_runs_unfused_says_why_and_still_replays(gpu, notmnist, start, epilogue, product):
    fused = fit(notmnist, start, epochs=5)[0]
    gpu.refused.add((epilogue, "float32"))
    net = fit(notmnist, start, epochs=5)[0]
    assert net.backend_facts["unfused"] == f"{product}: RuntimeError: Planning failed to find any suitable algorithm."
    assert net._backend.graphs.fallbacks == [] and net._backend.graphs.replays > 0
    for name in start:
        np.testing.assert_allclose(net.params[name], fused.params[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_the_benchmark_says_which_products_ran_unfused_in_each_precision(gpu):
    from fastmlp import benchmark

    gpu.refused.add(("RELU_AUX_BIAS", "bfloat16"))
    lines = []
    result = benchmark.compare(
        ["cupy"],
        dtypes=("float32",),
        precisions=("float32", "bf16"),
        hiddens=(16,),
        n=64,
        n_valid=32,
        epochs=2,
        warmup=1,
        log=lines.append,
    )
    unfused = [config["backends"]["cupy"]["facts"]["unfused"] for config in result["configs"]]
    assert unfused == ["none", "hidden_layer: RuntimeError: Planning failed to find any suitable algorithm."]
    tables = [line for text in lines for line in text.splitlines() if "products without their epilogue" in line]
    assert tables == [f"cupy: products without their epilogue: {text}" for text in unfused]


def test_the_gpus_out_of_memory_is_a_device_memory_error_and_the_hosts_stays_a_host_memory_error(gpu, notmnist, start):
    gpu.memory_limit = gpu.mapped_bytes + 200_000  # less than the fit's data
    with pytest.raises(DeviceMemoryError, match=r"the GPU ran out of memory: Out of memory allocating .*--batch-size"):
        fit(notmnist, start, epochs=2)
    gpu.memory_limit = 2**40
    gpu.host_memory_error = MemoryError("Unable to allocate 16.0 B for an array with shape (4,)")
    with pytest.raises(HostMemoryError, match="out of memory training") as raised:
        fit(notmnist, start, epochs=2)
    assert not isinstance(raised.value, DeviceMemoryError)
