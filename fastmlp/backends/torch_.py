"""The PyTorch backend: the generic steps on ``torch`` tensors, through ``array_api_compat.torch``.

The math is the generic code of :mod:`fastmlp.network` and :mod:`fastmlp.ops`; this class states
only what PyTorch needs besides: the device (``torch``: the CPU, ``torch:cuda``, ``torch:mps``), the
transfers, the synchronisation, and copies into the snapshot's buffers. Tensors are made without
``requires_grad``, so no autograd graph is recorded. Selecting a device that is missing fails
early with the reason, and float64 on the Apple GPU (which has no float64) is an error, never a
silent float32.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import BackendError
from .base import InPlaceBackend

__all__ = ["TorchBackend"]

_OTHER_CHOICES = "use --backend torch (the CPU), numpy or numba"


class TorchBackend(InPlaceBackend):
    """PyTorch tensors on the CPU (default), a CUDA GPU (``device='cuda'``) or an Apple GPU (``'mps'``)."""

    name = "torch"
    package = "torch"

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
        return facts

    def _products_library(self):
        """Which library does this device's matrix products, as PyTorch was built."""
        torch, kind = self._torch, self._device.type
        if kind == "cuda":
            return f"cuBLAS (CUDA {torch.version.cuda})"
        if kind == "mps":
            return "Metal Performance Shaders"
        built_with = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
        return f"PyTorch's BLAS, {built_with.group(1) if built_with else 'unknown'}"

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

    # ---------------------------------------------------------------- steps
    # In place, like the numpy backend (the products go to InPlaceBackend's buffers): measured on
    # the 2-core CPU (float32, N=6000, H=1000), the generic steps spend about twice the epoch's
    # products, most of it allocating and first touching N×H tensors; writing into reused ones
    # brings the epoch to about 1.2x its products.
    def bias_relu(self, S, b):
        """network.hidden_layer's A1 = relu(X W1 + b1) after the product, in place over X W1."""
        return self._torch.relu_(S.add_(b))  # (N, H); NaN stays NaN

    def relu_backward(self, A1, dA1):
        """network.hidden_backward's d1 = (d2 W2ᵀ) ⊙ [S1 > 0], in place over dA1 = d2 W2ᵀ."""
        return dA1.mul_(A1 > 0)  # (N, H)  d1, over dA1

    def momentum_update(self, param, velocity, grad, lr, momentum):
        """network.momentum_step, in place."""
        velocity.mul_(momentum).add_(grad, alpha=lr)  # shape of θ  v ← γ v + α g
        return param.sub_(velocity), velocity  # shape of θ  θ ← θ − v
