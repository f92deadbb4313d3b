"""Backend selection: argument > FASTMLP_BACKEND > numpy; clear errors; nothing optional at import."""

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import (
    BACKEND_NAMES,
    KERNEL_BACKENDS,
    Backend,
    _load_class,
    backend_status,
    get_backend,
    resolve_name,
    split_name,
)
from fastmlp.errors import BackendError, InvalidInputError


def run_python(code, env=None, **kwargs):
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        **kwargs,
    )


def test_default_is_numpy(monkeypatch):
    monkeypatch.delenv("FASTMLP_BACKEND", raising=False)
    assert resolve_name() == "numpy"
    assert fastmlp.MLP(784, 8, 10).backend == "numpy"


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_environment_value_counts_as_unset(monkeypatch, value):
    monkeypatch.setenv("FASTMLP_BACKEND", value)
    assert resolve_name() == "numpy"


def test_environment_variable_is_case_insensitive(monkeypatch, backend_name):
    monkeypatch.setenv("FASTMLP_BACKEND", f" {backend_name.upper()} ")
    assert resolve_name() == backend_name
    assert fastmlp.MLP(784, 8, 10).backend == backend_name
    assert get_backend().name == backend_name


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("FASTMLP_BACKEND", "no-such-backend")
    assert resolve_name("NumPy") == "numpy"
    assert fastmlp.MLP(784, 8, 10, backend="numpy").backend == "numpy"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_unknown_name_lists_the_valid_ones(monkeypatch, source):
    if source == "environment":
        monkeypatch.setenv("FASTMLP_BACKEND", "tensorflow")
        call = lambda: fastmlp.MLP(784, 8, 10)  # noqa: E731
    else:
        call = lambda: fastmlp.MLP(784, 8, 10, backend="tensorflow")  # noqa: E731
    with pytest.raises(
        ValueError, match=r"unknown backend 'tensorflow' .*choose one of numpy, numba, cupy, torch, jax, auto"
    ) as error:
        call()
    assert isinstance(error.value, InvalidInputError)
    if source == "environment":
        assert "FASTMLP_BACKEND" in str(error.value)


def test_auto_picks_the_best_usable_backend(monkeypatch):
    monkeypatch.setenv("FASTMLP_BACKEND", "auto")
    usable = [name for name in ("cupy", "numba", "numpy") if backend_status(name)["usable"]]
    assert resolve_name() == usable[0]


def test_status_of_every_backend_says_why_not():
    for name in BACKEND_NAMES:
        status = backend_status(name)
        assert status["usable"] or status["reason"], name
    assert backend_status("numpy") == {"name": "numpy", "installed": True, "usable": True, "reason": ""}


def test_import_fastmlp_imports_no_optional_library():
    result = run_python(
        """
        import sys
        import fastmlp
        model = fastmlp.MLP(784, 8, 10)
        fastmlp.datasets.load_notmnist
        optional = ("numba", "cupy", "torch", "jax", "matplotlib", "pooch", "tqdm", "llvmlite", "onnx", "onnxruntime")
        loaded = sorted(m for m in optional if m in sys.modules)
        print(loaded)
    """,
        env={"FASTMLP_BACKEND": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


#: "package[, what needs it]" -> how the test asks for what needs the optional package
MISSING_PACKAGES = {
    "numba": 'fastmlp.MLP(784, 8, 10, backend="numba")',
    "cupy": 'fastmlp.get_backend("cupy")',
    "torch": 'fastmlp.MLP(784, 8, 10, backend="torch")',
    "jax": 'fastmlp.get_backend("jax")',
    "onnx": 'fastmlp.MLP(784, 8, 10).to_onnx("model.onnx")',
    "torch, MLP.to_torch": "fastmlp.MLP(784, 8, 10).to_torch()",
    "torch, MLP.from_torch": "fastmlp.MLP.from_torch(None)",
}


@pytest.mark.parametrize("case", MISSING_PACKAGES)
def test_a_missing_package_is_named_with_its_extra(case, tmp_path):
    package = case.split(",")[0]
    result = run_python(
        f"""
        import sys
        sys.modules["{package}"] = None  # makes `import {package}` fail as if it were not installed
        import fastmlp
        try:
            {MISSING_PACKAGES[case]}
        except fastmlp.BackendError as exc:
            print("BackendError:", exc)
    """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"needs the package '{package}'" in result.stdout and f'pip install "fastmlp[{package}]"' in result.stdout


NVRTC_MISSING = (
    "CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: "
    "cannot open shared object file: No such file or directory"
)

#: test doubles of CuPy that raise what CuPy raises: on a machine without a GPU (cupy.cuda.runtime
#: fails), and on a GPU machine without NVRTC (the first kernel compilation fails)
FAKE_CUPY = {
    "no GPU": {
        "cupy/__init__.py": "from . import cuda\n__version__ = '0.0-test-double'\n",
        "cupy/cuda/__init__.py": "from . import runtime\n",
        "cupy/cuda/runtime.py": (
            "class CUDARuntimeError(RuntimeError):\n    pass\n\n"
            "def getDeviceCount():\n"
            "    raise CUDARuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
        ),
    },
    "no NVRTC": {
        "cupy/__init__.py": (
            "from . import cuda\n__version__ = '0.0-test-double'\n"
            f"def _compile(*args, **kwargs):\n    raise RuntimeError({NVRTC_MISSING!r})\n"
            "class ElementwiseKernel:\n"
            "    def __init__(self, *args, **kwargs): pass\n"
            "    __call__ = _compile\n"
            "class RawModule:\n"
            "    def __init__(self, *args, **kwargs): pass\n"
            "    get_function = _compile\n"
        ),
        "cupy/cuda/__init__.py": "from . import runtime\n",
        "cupy/cuda/runtime.py": "def getDeviceCount():\n    return 1\n",
    },
}


def select_cupy_with(double, tmp_path):
    """stdout of a fresh Python that selects cupy with the test double ``double`` importable as cupy."""
    for relative, text in FAKE_CUPY[double].items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    result = run_python(
        """
        import fastmlp
        try:
            fastmlp.MLP(784, 8, 10, backend="cupy")
        except fastmlp.BackendError as exc:
            print("BackendError:", exc)
    """,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cupy_without_a_gpu_gives_a_distinct_error_before_training(tmp_path):
    said = select_cupy_with("no GPU", tmp_path)
    assert "CuPy is installed but no usable CUDA device or driver was found" in said
    assert "cudaErrorNoDevice" in said
    assert "pip install" not in said


def test_cupy_without_its_kernel_compiler_gives_a_distinct_error_before_training(tmp_path):
    said = select_cupy_with("no NVRTC", tmp_path)
    assert "CuPy cannot compile its kernels on this machine (RuntimeError: CuPy failed to load libnvrtc.so.12" in said
    assert 'pip install "cupy-cuda12x[ctk]"' in said and "--backend numpy or numba" in said
    assert "no usable CUDA device" not in said


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed in this environment")
def test_real_cupy_on_this_machine_trains_or_says_why_not_before_training():
    """With the real CuPy (the CPU job installs it on a machine without a GPU; the GPU job has a
    GPU): either the cupy backend trains, or selecting it fails at once with the distinct reason
    its status gives and a way out."""
    status = backend_status("cupy")
    if status["usable"]:
        net = fastmlp.MLP(784, 8, 10, backend="cupy")
        history = net.fit(np.zeros((16, 784), np.float32), np.arange(16) % 10, epochs=2)
        assert len(history.train_loss) == 2 and net.backend_facts["device"].startswith("GPU ")
        return
    assert re.match(r"CuPy is installed but|CuPy cannot compile its kernels", status["reason"]), status["reason"]
    with pytest.raises(BackendError) as raised:
        fastmlp.MLP(784, 8, 10, backend="cupy")
    assert str(raised.value) == status["reason"] and "use --backend numpy or numba" in status["reason"]


def test_backend_object_reports_itself(backend_name):
    backend = get_backend(backend_name)
    facts = backend.describe()
    assert facts["backend"] == backend_name and facts["device"]
    assert backend_name in repr(backend)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_override_keeps_the_generic_signature(name):
    """A backend replaces a generic step without changing how the model calls it (checked
    without constructing the backend, so it holds for cupy on a machine without a GPU)."""
    cls = _load_class(name)
    overridden = [
        attr
        for attr, value in vars(Backend).items()
        if callable(value) and not attr.startswith("__") and getattr(cls, attr) is not value
    ]
    for attr in overridden:
        generic = inspect.signature(getattr(Backend, attr))
        override = inspect.signature(getattr(cls, attr))
        assert list(override.parameters) == list(generic.parameters), f"{cls.__name__}.{attr}{override} vs {generic}"
    if name in KERNEL_BACKENDS:  # each kernel backend replaces the generic fused steps
        fused = ("bias_relu", "softmax_xent_grad", "logits_loss_acc", "hidden_backward", "momentum_update")
        assert [step for step in fused if getattr(cls, step) is getattr(Backend, step)] == []


# ------------------------------------------------------------------ precision and CUDA graphs
#: who offers each reduced precision, as the messages name them (torch: on a CPU with native bf16)
OFFERED_BY = {"tf32": "cupy, torch:cuda, jax:gpu", "bf16": "cupy, torch, torch:cuda, jax:gpu"}


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_a_cpu_backend_refuses_a_reduced_precision_naming_what_offers_it(backend_name, precision):
    offered = get_backend(backend_name).precisions
    if precision in offered:
        pytest.skip(f"the {backend_name} backend offers {precision} here")
    with pytest.raises(InvalidInputError) as raised:
        fastmlp.MLP(784, 8, 10, backend=backend_name, precision=precision)
    message = str(raised.value)
    assert raised.value.parameter == "precision"
    assert message.startswith(f"precision '{precision}' is not offered by the {backend_name} backend")
    assert message.endswith(f", which offers {', '.join(offered)}; it is offered by: {OFFERED_BY[precision]}")


@pytest.mark.parametrize(
    "precision, dtype, message",
    [
        ("fp8", "float32", r"precision must be one of float32, tf32, bf16, got 'fp8'"),
        (None, "float32", r"precision must be one of float32, tf32, bf16, got None"),
        (
            "tf32",
            "float64",
            r"precision 'tf32' needs dtype float32 .*; use dtype float32 with precision 'tf32' "
            r"\(offered by: cupy, torch:cuda, jax:gpu\), or precision 'float32'",
        ),
        ("bf16", "float64", r"precision 'bf16' needs dtype float32 .*\(offered by: cupy, torch, torch:cuda, jax:gpu\)"),
    ],
)
def test_a_precision_that_cannot_work_is_an_error_before_training(backend_name, precision, dtype, message):
    with pytest.raises(InvalidInputError, match=message):
        fastmlp.MLP(784, 8, 10, backend=backend_name, dtype=dtype, precision=precision)


def test_float32_precision_is_the_default_and_means_the_dtypes_own(backend_name, dtype):
    net = fastmlp.MLP(784, 8, 10, backend=backend_name, dtype=dtype)
    assert net.precision == "float32" and net._backend.precision == "float32"
    assert "precision" not in repr(net)


def test_the_backends_that_offer_each_setting():
    from fastmlp.backends import backends_offering

    assert backends_offering(precision="float32") == (
        "numpy",
        "numba",
        "cupy",
        "torch",
        "torch:cuda",
        "torch:mps",
        "jax",
    )
    assert backends_offering(precision="tf32") == ("cupy", "torch:cuda", "jax:gpu")
    assert backends_offering(precision="bf16") == ("cupy", "torch", "torch:cuda", "jax:gpu")
    assert backends_offering(cuda_graphs=True) == ("cupy",)


def test_a_cpu_backend_runs_each_step_as_a_plain_call(backend_name):
    """numpy, numba and torch run a compiled step as the plain Python call it is, every time and
    whatever ``cuda_graphs`` says; jax traces it once and then runs the compiled computation."""
    if split_name(backend_name)[0] == "cupy":
        pytest.skip("cupy replays compiled steps as CUDA graphs: tests/test_gpu.py")
    calls = []

    def step(backend, x):
        calls.append(x.shape)
        return x + 1

    traced = split_name(backend_name)[0] == "jax"
    for setting in (None, False):
        calls.clear()
        backend = fastmlp.MLP(784, 8, 10, backend=backend_name, cuda_graphs=setting)._backend
        compiled = backend.compiled(step)
        x = backend.asarray(np.zeros(3, np.float32))
        for _ in range(3):
            x = compiled(x)
        assert backend.to_numpy(x).tolist() == [3.0, 3.0, 3.0]
        assert len(calls) == (1 if traced else 3), setting
        assert (backend.compile_step(step) is step) is not traced


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            True,
            r"cuda_graphs=True needs a backend that replays CUDA graphs \(offered by: cupy\); the \w+ backend runs "
            r"each step as a plain call",
        ),
        ("yes", r"cuda_graphs must be None, True or False, got 'yes'"),
    ],
)
def test_cuda_graphs_that_cannot_be_honoured_is_an_error(backend_name, setting, message):
    if _load_class(backend_name).replays_cuda_graphs and setting is True:
        pytest.skip(f"the {backend_name} backend replays CUDA graphs")
    with pytest.raises(InvalidInputError, match=message) as raised:
        fastmlp.MLP(784, 8, 10, backend=backend_name, cuda_graphs=setting)
    assert raised.value.parameter == "cuda_graphs"


def test_the_graph_switch_reads_the_argument_and_the_environment(monkeypatch):
    from fastmlp.backends._cuda_graphs import ENV_VAR, graphs_enabled

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert graphs_enabled(None) and graphs_enabled(True) and not graphs_enabled(False)
    monkeypatch.setenv(ENV_VAR, "0")
    assert not graphs_enabled(None) and not graphs_enabled(True)
    monkeypatch.setenv(ENV_VAR, "1")
    assert graphs_enabled(None) and not graphs_enabled(False)


@pytest.mark.parametrize(
    "requested, timeout", [("numba", "4"), ("torch:cuda", "4"), ("jax", "4"), ("all", "4"), ("numpy", "None")]
)
def test_openblas_workers_are_told_to_sleep_when_other_thread_pools_may_run(requested, timeout):
    """Backends with thread pools of their own (Numba's, PyTorch's, XLA's) run between NumPy's BLAS
    calls: the command line lets OpenBLAS's idle workers sleep, before NumPy loads."""
    result = run_python(f"""
        import os, sys
        os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)  # as if the user had not set it
        from fastmlp.backends import prepare_threads
        prepare_threads([{requested!r}])
        print("numpy" in sys.modules, os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", timeout]


def test_a_buffer_request_is_answered_by_the_same_memory_every_time():
    """Fewer rows get the first rows of the smallest buffer that has enough (the validation pass in
    the training pass's activations); more rows get a new buffer, and the earlier requests keep
    theirs, so the addresses a CUDA graph recorded stay valid."""
    backend = get_backend("numpy")
    train = backend._buffer("hidden", (6, 4), np.float32)
    valid = backend._buffer("hidden", (2, 4), np.float32)
    assert valid.base is train.base and valid.ctypes.data == train.ctypes.data and valid.flags.c_contiguous
    larger = backend._buffer("hidden", (8, 4), np.float32)
    assert not np.shares_memory(larger, train)
    again = [backend._buffer("hidden", (rows, 4), np.float32) for rows in (6, 2, 8)]
    assert [a.ctypes.data for a in again] == [train.ctypes.data, train.ctypes.data, larger.ctypes.data]
    others = [backend._buffer("hidden", (2, 5), np.float32), backend._buffer("hidden", (2, 4), np.float64)]
    assert not any(np.shares_memory(other, train) for other in others)  # another row shape or dtype


def test_the_validation_pass_of_a_fit_reuses_the_training_pass_activations():
    """fastmlp train's peak memory: no N×H buffer of its own for the validation set."""
    rng = np.random.default_rng(0)
    X, X_valid = rng.random((60, 784), dtype=np.float32), rng.random((20, 784), dtype=np.float32)
    model = fastmlp.MLP(784, 32, 10, backend="numpy")
    allocated = []
    empty = type(model._backend).empty
    model._backend.empty = lambda shape, dtype: allocated.append(tuple(shape)) or empty(model._backend, shape, dtype)
    model.fit(X, rng.integers(0, 10, 60), X_valid, rng.integers(0, 10, 20), epochs=2)
    assert (60, 32) in allocated and (20, 32) not in allocated
