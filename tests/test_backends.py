"""Backend selection: argument > FASTMLP_BACKEND > numpy; clear errors; nothing optional at import."""

import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap

import pytest

import fastmlp
from fastmlp.backends import (
    BACKEND_CHOICES, BACKEND_NAMES, KERNEL_BACKENDS, Backend, _load_class, backend_status, get_backend, resolve_name,
)
from fastmlp.errors import BackendError, InvalidInputError


def run_python(code, env=None, **kwargs):
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=120, **kwargs)


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
    with pytest.raises(ValueError, match=r"unknown backend 'tensorflow' .*choose one of numpy, numba, cupy, torch, jax, auto") as error:
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
    result = run_python("""
        import sys
        import fastmlp
        model = fastmlp.MLP(784, 8, 10)
        fastmlp.datasets.load_notmnist
        loaded = sorted(m for m in ("numba", "cupy", "torch", "jax", "matplotlib", "pooch", "tqdm", "llvmlite") if m in sys.modules)
        print(loaded)
    """, env={"FASTMLP_BACKEND": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_missing_numba_names_the_package_and_the_extra():
    result = run_python("""
        import sys
        sys.modules["numba"] = None  # makes `import numba` fail as if it were not installed
        import fastmlp
        try:
            fastmlp.MLP(784, 8, 10, backend="numba")
        except fastmlp.BackendError as exc:
            print("BackendError:", exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "needs the package 'numba'" in result.stdout
    assert 'pip install "fastmlp[numba]"' in result.stdout


def test_a_missing_cupy_names_the_package_and_the_extra():
    result = run_python("""
        import sys
        sys.modules["cupy"] = None
        import fastmlp
        try:
            fastmlp.get_backend("cupy")
        except fastmlp.BackendError as exc:
            print("BackendError:", exc)
    """)
    assert "needs the package 'cupy'" in result.stdout and 'pip install "fastmlp[cupy]"' in result.stdout


NVRTC_MISSING = ("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: "
                 "cannot open shared object file: No such file or directory")

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
    result = run_python("""
        import fastmlp
        try:
            fastmlp.MLP(784, 8, 10, backend="cupy")
        except fastmlp.BackendError as exc:
            print("BackendError:", exc)
    """, env={"PYTHONPATH": str(tmp_path)})
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
def test_real_cupy_on_this_machine_is_usable_or_says_why():
    status = backend_status("cupy")
    assert status["installed"]
    if not status["usable"]:
        assert "CuPy is installed but" in status["reason"] or "cannot compile" in status["reason"]
        with pytest.raises(BackendError, match="CuPy is installed but|cannot compile"):
            fastmlp.MLP(784, 8, 10, backend="cupy")


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
    overridden = [attr for attr, value in vars(Backend).items()
                  if callable(value) and not attr.startswith("__") and getattr(cls, attr) is not value]
    for attr in overridden:
        generic = inspect.signature(getattr(Backend, attr))
        override = inspect.signature(getattr(cls, attr))
        assert list(override.parameters) == list(generic.parameters), f"{cls.__name__}.{attr}{override} vs {generic}"
    if name in KERNEL_BACKENDS:  # each kernel backend replaces the generic fused steps
        fused = ("bias_relu", "softmax_xent_grad", "logits_loss_acc", "hidden_backward", "momentum_update")
        assert [step for step in fused if getattr(cls, step) is getattr(Backend, step)] == []
