"""The PyTorch backend: the generic steps on ``torch`` tensors, through ``array_api_compat.torch``.

The math is the generic code of :mod:`fastmlp.network` and :mod:`fastmlp.ops`; this class states
only what PyTorch needs besides: the device (``torch``: the CPU, ``torch:cuda``, ``torch:mps``), the
transfers, the synchronisation, and copies into the snapshot's buffers. Tensors are made without
``requires_grad``, so no autograd graph is recorded. Selecting a device that is missing fails
early with the reason, and float64 on the Apple GPU (which has no float64) is an error, never a
silent float32.

Precisions (the README's "Precision and CUDA graphs"): ``bf16`` on the CPU, where it computes bf16
products natively, and on CUDA; ``tf32`` on CUDA. Under ``bf16`` the three large products (X W1
for training and validation, Xᵀ d1) read bf16 copies and accumulate in FP32: of X once per ``fit``
(:meth:`TorchBackend.hold_constant`), of W1 at each product, of d1 once per epoch. On CUDA their
results are float32 (``mm``'s ``out_dtype``). PyTorch's CPU products have no float32 output for
bf16 operands, so there a result is bf16, rounded once after the FP32 accumulation: the hidden
layer's is widened to float32 after its ReLU, and dW1 is added from bf16 into the float32
velocity. Under ``tf32`` every product of a training step runs with
``torch.backends.cuda.matmul.fp32_precision = "tf32"``, set for the step and restored after.
Parameters, velocities, loss and metrics stay float32; inference computes in float32.

On the CPU the products with W2 (and, in bf16, the hidden layer's) go through oneDNN's linear
with the bias as its epilogue: MKL runs those 10-column products 2-4x slower here.
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np

from ..errors import BackendError
from .base import InPlaceBackend

__all__ = ["TorchBackend"]

_OTHER_CHOICES = "use --backend torch (the CPU), numpy or numba"
#: the precisions of each device (bf16 on the CPU only where it has native bf16 products)
_PRECISIONS_ON = {"cpu": ("float32", "bf16"), "cuda": ("float32", "tf32", "bf16"), "mps": ("float32",)}
_NO_NATIVE_BF16 = (
    "this CPU has no native bf16 products: PyTorch reports neither AVX512_BF16 nor AMX, and without "
    "them its bf16 products are emulated, slower than float32; use precision float32 (numba is the "
    "fastest CPU backend) or a GPU"
)


def native_bf16(torch):
    """Whether this CPU computes bf16 products natively, as PyTorch reports it (AVX512_BF16 or AMX
    tiles on x86; no other CPU counts here)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


class TorchBackend(InPlaceBackend):
    """PyTorch tensors on the CPU (default), a CUDA GPU (``device='cuda'``) or an Apple GPU (``'mps'``)."""

    name = "torch"
    package = "torch"
    #: what some device offers (each device's own: ``precisions`` of the object)
    precisions: tuple[str, ...] = ("float32", "tf32", "bf16")

    def __init__(self, device=None):
        # read by PyTorch's OpenMP runtime when it loads: idle threads sleep instead of spinning.
        # Measured on the shared 2-core CPU: spinning threads made a small epoch 18x slower.
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        torch = self._import_package("torch", 'pip install "fastmlp[torch]"')
        self._torch = torch
        self._device = torch.device(self._check_device(torch, device or "cpu"))
        import array_api_compat.torch as xp

        super().__init__(xp, torch)
        if device:
            self.name = f"{type(self).name}:{device}"
        self.precisions = tuple(p for p in _PRECISIONS_ON[self._device.type] if self._why_not(p) is None)
        #: the dtypes whose products go through oneDNN's linear, with the bias as its epilogue (on the
        #: CPU, where PyTorch has oneDNN; oneDNN has no float64)
        onednn = self._device.type == "cpu" and torch.backends.mkldnn.is_available()
        self._onednn_dtypes = (torch.float32, torch.bfloat16) if onednn else ()
        self._constants = {}  # (address, shape) -> tensor promised unchanged until release (hold_constant)
        self._bf16_copies = {}  # (address, shape) -> the bf16 copy of a constant tensor

    @classmethod
    def offered_on(cls, precision):
        return tuple(
            cls.name if device == "cpu" else f"{cls.name}:{device}"
            for device, offered in _PRECISIONS_ON.items()
            if precision in offered
        )

    def why_not_offered(self, precision):
        return self._why_not(precision) if precision in _PRECISIONS_ON[self._device.type] else None

    def _why_not(self, precision):
        """Why this machine and this PyTorch cannot give this device's ``precision`` (None: they can)."""
        torch, kind = self._torch, self._device.type
        if kind == "cpu" and precision == "bf16" and not native_bf16(torch):
            return _NO_NATIVE_BF16
        if kind == "cuda" and precision != "float32":  # what an older PyTorch lacks
            owner, feature, words = (
                (torch.backends.cuda.matmul, "fp32_precision", "torch.backends.cuda.matmul.fp32_precision")
                if precision == "tf32"
                else (torch.ops.aten.mm, "dtype", "the out_dtype of torch.mm")
            )
            if not hasattr(owner, feature):
                return f"PyTorch {torch.__version__} has no {words}; a newer PyTorch has it"
        return None

    @staticmethod
    def _check_device(torch, device):
        """``device`` if PyTorch can use it here, else BackendError saying why."""
        if device == "cuda" and not torch.cuda.is_available():
            build = (
                "this PyTorch build has no CUDA support"
                if torch.version.cuda is None
                else f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable CUDA device or driver"
            )
            raise BackendError(f"the torch:cuda backend needs a CUDA GPU: {build}; {_OTHER_CHOICES}")
        if device == "mps" and not torch.backends.mps.is_available():
            why = (
                "this PyTorch build has no MPS support"
                if not torch.backends.mps.is_built()
                else "no Apple GPU is available (MPS needs macOS 12.3+ on Apple silicon or an AMD GPU)"
            )
            raise BackendError(f"the torch:mps backend needs an Apple GPU: {why}; {_OTHER_CHOICES}")
        return device

    # ---------------------------------------------------------------- facts
    @property
    def device(self):
        kind = self._device.type
        if kind == "cuda":
            index = self._device.index if self._device.index is not None else self._torch.cuda.current_device()
            return f"GPU {self._torch.cuda.get_device_name(index)} (CUDA device {index})"
        return "Apple GPU (MPS)" if kind == "mps" else "CPU"

    def describe(self):
        torch = self._torch
        facts = {**super().describe(), "torch_version": torch.__version__, "products": self._products_library()}
        if self._device.type == "cpu":
            facts["torch_threads"] = torch.get_num_threads()
            facts["native_bf16"] = "yes" if native_bf16(torch) else "no"
        return facts

    def _products_library(self):
        """Which library does this device's matrix products, as PyTorch was built."""
        torch, kind = self._torch, self._device.type
        if kind == "cuda":
            return f"cuBLAS (CUDA {torch.version.cuda})"
        if kind == "mps":
            return "Metal Performance Shaders"
        built_with = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        blas = f"PyTorch's BLAS, {built_with.group(1) if built_with else 'unknown'}"
        if not self._onednn_dtypes:
            return blas
        return f"{blas}, and oneDNN for the products with W2" + (
            " and, in bf16, X W1 and Xᵀ d1" if self.precision == "bf16" else ""
        )

    # ------------------------------------------------------------ transfers
    def _check_dtype(self, dtype):
        if self._device.type == "mps" and np.dtype(dtype) == np.float64:
            raise BackendError(
                "the Apple GPU (MPS) cannot compute in float64; use --dtype float32 on torch:mps, "
                "or --backend torch (the CPU) for float64"
            )

    def asarray(self, host_array, dtype=None, *, copy=True):
        host = np.array(host_array, dtype=dtype, copy=True if copy else None, order="C")
        if not host.flags.writeable:  # PyTorch refuses to share memory it may not write
            host = host.copy()
        self._check_dtype(host.dtype)
        tensor = self._torch.from_numpy(host)
        return tensor if self._device.type == "cpu" else tensor.to(self._device)

    def hold_constant(self, *arrays):
        """X and X_valid of a fit: under precision bf16 their bf16 copies are made once, at first use."""
        for array in arrays:
            if array is not None:
                self._constants[(array.data_ptr(), tuple(array.shape))] = array

    def release(self):
        super().release()
        self._constants.clear()
        self._bf16_copies.clear()

    def to_numpy(self, array):
        host = array.detach().cpu().numpy()
        return host.copy() if self._device.type == "cpu" else host  # .cpu() of a CPU tensor is the tensor

    def synchronize(self, *pending):
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)
        elif self._device.type == "mps":
            self._torch.mps.synchronize()

    def full(self, shape, value, dtype):
        self._check_dtype(np.dtype(str(dtype).removeprefix("torch.")))
        return self.xp.full(shape, value, dtype=dtype, device=self._device)

    def copy(self, array, into=None):
        if into is not None and into.shape == array.shape and into.dtype == array.dtype:
            return into.copy_(array)
        return array.clone()

    def empty(self, shape, dtype):
        return self._torch.empty(shape, dtype=dtype, device=self._device)

    def compile_step(self, step, *, donate=()):
        """``step`` itself; under precision tf32, ``step`` run with TF32 products."""
        if self.precision != "tf32":
            return step

        def in_tf32(*args, **kwargs):
            with self._tf32():
                return step(*args, **kwargs)

        return in_tf32

    @contextlib.contextmanager
    def _tf32(self):
        """float32 products on TF32 tensor cores for the duration, then PyTorch's setting as it was."""
        matmul = self._torch.backends.cuda.matmul
        before, matmul.fp32_precision = matmul.fp32_precision, "tf32"
        try:
            yield
        finally:
            matmul.fp32_precision = before

    # ---------------------------------------------------------------- products
    def matmul(self, A, B, *, workspace=None):
        """A @ B of network.py, into the buffer ``workspace`` names. With a workspace (the large
        products: X W1, Xᵀ d1) under precision bf16, the product of bf16 copies of A and B with FP32
        accumulation: a float32 result on CUDA, a bf16 one on the CPU (see the module's docstring)."""
        if workspace is None or self.precision == "float32":
            return super().matmul(A, B, workspace=workspace)
        if self.precision == "tf32":
            with self._tf32():
                return super().matmul(A, B, workspace=workspace)
        torch, shape = self._torch, (A.shape[0], B.shape[1])
        A, B = self._bf16(A, f"{workspace}:A"), self._bf16(B, f"{workspace}:B")
        if self._device.type == "cuda":
            return torch.mm(A, B, out_dtype=torch.float32, out=self._buffer(workspace, shape, torch.float32))
        return torch.mm(A, B, out=self._buffer(workspace, shape, torch.bfloat16))

    def _bf16(self, array, role):
        """``array`` as the bf16 products read it: itself when it is bf16 already (d1), its copy made
        once when it is constant (X, X_valid), else a copy into the buffer of ``role`` (W1)."""
        torch = self._torch
        if array.dtype == torch.bfloat16:
            return array
        transposed = not array.is_contiguous()
        base = array.T if transposed else array  # Xᵀ: the copy of X, transposed
        key = (base.data_ptr(), tuple(base.shape))
        copy = self._bf16_copies.get(key)
        if copy is None:
            copy = self._buffer(("bf16", key if key in self._constants else role), base.shape, torch.bfloat16)
            copy.copy_(base)  # round to nearest even
            if key in self._constants:
                self._bf16_copies[key] = copy
        return copy.T if transposed else copy

    def _linear(self, A, W, b=None):
        """A W (+ b) on the CPU: one oneDNN product with the bias as its epilogue (bf16 operands give
        a bf16 result). Measured on the 2-core CPU: MKL runs the products with 10 columns (A1 W2,
        d2 W2ᵀ) 2-4x slower than oneDNN."""
        return self._torch.ops.mkldnn._linear_pointwise(A, W.T, b, "none", [], "")

    # ---------------------------------------------------------------- steps
    # In place, like the numpy backend (the products go to InPlaceBackend's buffers): measured on
    # the 2-core CPU (float32, N=6000, H=1000), the generic steps spend about twice the epoch's
    # products, most of it allocating and first touching N×H tensors; writing into reused ones
    # brings the epoch to about 1.2x its products.
    def hidden_layer(self, X, W1, b1, *, workspace=None):
        """network.hidden_layer. Under precision bf16 on the CPU (with a workspace: the loop's),
        S1 = X W1 + b1 is one oneDNN product of the bf16 copies with the bias as its epilogue, then
        the ReLU in place on its bf16 result (oneDNN's own ReLU epilogue turns NaN into 0), then
        the result widened into a float32 buffer, which the small products and the mask read."""
        if not (self.precision == "bf16" and workspace is not None and self._onednn_dtypes):
            return super().hidden_layer(X, W1, b1, workspace=workspace)  # the product, then bias_relu
        S1 = self._linear(self._bf16(X, f"{workspace}:A"), self._bf16(W1, f"{workspace}:B"), b1)  # (N, H) bf16
        A1 = self._torch.relu_(S1)  # A1 = relu(X W1 + b1); NaN stays NaN
        return self._buffer(f"{workspace}:A1", A1.shape, b1.dtype).copy_(A1)  # (N, H) float32

    def affine(self, A, W, b):
        """network.forward's S2 = A1 W2 + b2; on the CPU one oneDNN product with the bias as its epilogue."""
        return self._linear(A, W, b) if A.dtype in self._onednn_dtypes else super().affine(A, W, b)

    def bias_relu(self, S, b):
        """network.hidden_layer's A1 = relu(X W1 + b1) after the product, in place over X W1."""
        return self._torch.relu_(S.add_(b))  # (N, H); NaN stays NaN

    def hidden_backward(self, A1, d2, W2):
        """network.hidden_backward with dW2 = A1ᵀ d2 computed as (d2ᵀ A1)ᵀ (MKL runs that shape
        about 4x faster), d2 W2ᵀ by oneDNN on the CPU, and d1 = (d2 W2ᵀ) ⊙ [S1 > 0] in one pass.
        Under precision bf16, d1 then goes to its bf16 copy, the one of the epoch, which
        dW1 = Xᵀ d1 reads."""
        torch = self._torch
        dW2 = (d2.T @ A1).T  # (H, K)  dW2 = A1ᵀ d2
        db2 = d2.sum(dim=0)  # (K,)  db2 = Σ_n d2
        # (N, H)  d2 W2ᵀ, float32 in every precision
        dA1 = self._linear(d2, W2.T) if d2.dtype in self._onednn_dtypes else super().matmul(d2, W2.T, workspace="dA1")
        d1 = self.relu_backward(A1, dA1)  # (N, H)  d1 = (d2 W2ᵀ) ⊙ [S1 > 0]
        ones = self._buffer("ones", d1.shape[:1], d1.dtype).fill_(1)  # (N,)
        db1 = ones @ d1  # (H,)  db1 = Σ_n d1 = 1ᵀ d1, a product: 2.5x faster than sum(dim=0) here
        if self.precision == "bf16":
            d1 = self._buffer("d1", d1.shape, torch.bfloat16).copy_(d1)  # (N, H) round to nearest even
        return dW2, db2, d1, db1

    def relu_backward(self, A1, dA1):
        """network.hidden_backward's d1 = (d2 W2ᵀ) ⊙ [S1 > 0] in one pass (PyTorch's own ReLU
        backward, 0 where A1 <= 0; A1 > 0 exactly where S1 > 0), in place over dA1 = d2 W2ᵀ."""
        return self._torch.ops.aten.threshold_backward.grad_input(dA1, A1, 0, grad_input=dA1)  # (N, H)

    def momentum_update(self, param, velocity, grad, lr, momentum):
        """network.momentum_step, in place (a bf16 gradient, dW1 on the CPU under precision bf16,
        is added to the float32 velocity as it is)."""
        velocity.mul_(momentum).add_(grad, alpha=lr)  # shape of θ  v ← γ v + α g
        return param.sub_(velocity), velocity  # shape of θ  θ ← θ − v
