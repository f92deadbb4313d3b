"""The JAX backend: the generic steps on ``jax.numpy``, each epoch compiled whole with ``jax.jit``.

JAX arrays are immutable and dispatching op by op is slow, so this backend answers the
``compile_step`` seam with ``jax.jit``: the epoch's forward, backward, update and validation
metrics become one XLA computation, and the old parameters and velocities are *donated* (their
buffers reused for the new ones; the loop's snapshot is a real copy made inside the step).
:meth:`release` keeps the compiled steps (they hold no buffers), so a second ``fit`` of the same
model compiles nothing.

Devices: ``jax`` runs where JAX puts arrays by default (its first device: a GPU when JAX has one);
``jax:cpu`` and ``jax:gpu`` choose. float64: JAX computes in float32 unless its switch
``jax_enable_x64`` is on; asking this backend for a float64 array turns it on for the process
(never a silent float32). float32 work is unchanged by the switch: every array here has an
explicit dtype and the learning rate and momentum are weakly typed Python floats.

Precisions (on a GPU; the CPU computes in float32 only): every product of a compiled step runs
under ``jax.default_matmul_precision("float32")`` and the inference products with
``Precision.HIGHEST``, so that float32 is float32 (XLA on a GPU would otherwise round float32
operands to TF32). Under ``tf32`` the loop's products (those with a workspace: X W1, Xᵀ d1, d2 W2ᵀ,
as on the torch backend) run on TF32 tensor cores (XLA's ``TF32_TF32_F32`` algorithm); under
``bf16`` they read bf16 copies of their operands and accumulate in FP32 into a float32 result
(``preferred_element_type``; XLA fuses the casts into the step). Parameters, velocities, loss
and metrics stay float32.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError
from .base import Backend

__all__ = ["JaxBackend"]


#: the precisions of each platform's products (see the module's docstring)
_PRECISIONS_ON = {"cpu": ("float32",), "gpu": ("float32", "tf32", "bf16")}


class JaxBackend(Backend):
    """JAX arrays on JAX's default device, or on the CPU (``device='cpu'``) or a GPU (``'gpu'``)."""

    name = "jax"
    package = "jax"
    #: what some device offers (each device's own: ``precisions`` of the object)
    precisions: tuple[str, ...] = ("float32", "tf32", "bf16")

    def __init__(self, device=None):
        jax = self._import_package("jax", 'pip install "fastmlp[jax]"')
        self._jax = jax
        self._device = self._open_device(jax, device)
        super().__init__(jax.numpy)
        self.precisions = _PRECISIONS_ON["cpu" if self._device.platform == "cpu" else "gpu"]
        self.precision = self.precisions[0]
        if device:
            self.name = f"{type(self).name}:{device}"

    @classmethod
    def offered_on(cls, precision):
        platforms = [platform for platform, offered in _PRECISIONS_ON.items() if precision in offered]
        return (cls.name,) if len(platforms) == len(_PRECISIONS_ON) else tuple(f"{cls.name}:{p}" for p in platforms)

    @staticmethod
    def _open_device(jax, platform):
        """The first device of ``platform`` (None: JAX's default device), or BackendError saying why."""
        try:
            return jax.devices(platform)[0] if platform else jax.devices()[0]
        except RuntimeError as exc:
            raise BackendError(
                f"JAX {jax.__version__} is installed but has no {platform or 'usable'} device ({exc}); "
                'for a GPU install JAX with its CUDA plugin (pip install "jax[cuda12]"), '
                "or use --backend jax:cpu, numpy or numba"
            ) from None

    # ---------------------------------------------------------------- facts
    @property
    def device(self):
        kind = self._device.platform
        return "CPU" if kind == "cpu" else f"{kind.upper()} {self._device.device_kind} (JAX device {self._device.id})"

    def describe(self):
        return {
            **super().describe(),
            "jax_version": self._jax.__version__,
            "jax_enable_x64": bool(self._jax.config.jax_enable_x64),
            "products": "XLA's own CPU kernels" if self._device.platform == "cpu" else "cuBLAS, called by XLA",
        }

    # ------------------------------------------------------------ transfers
    def _host_dtype(self, dtype):
        """The dtype JAX will hold ``dtype`` in: float64 turns the x64 switch on; int64 labels and
        indices become int32 while it is off (their values fit)."""
        dtype = np.dtype(dtype)
        if dtype == np.float64 and not self._jax.config.jax_enable_x64:
            self._jax.config.update("jax_enable_x64", True)
        if dtype == np.int64 and not self._jax.config.jax_enable_x64:
            return np.dtype(np.int32)
        return dtype

    def asarray(self, host_array, dtype=None, *, copy=True):
        host = np.asarray(host_array, dtype=dtype)
        host = np.array(host, dtype=self._host_dtype(host.dtype), copy=True if copy else None)
        return self._jax.device_put(host, self._device)

    def full(self, shape, value, dtype):
        return self.xp.full(shape, value, dtype=self._host_dtype(dtype), device=self._device)

    def copy(self, array, into=None):
        return self.xp.array(array, copy=True)  # a new buffer: the step may donate the original

    def synchronize(self, *pending):
        self._jax.block_until_ready(pending)

    def release(self):
        """Drop the reusable buffers; keep the compiled steps, which hold none of them."""
        self._buffers.clear()

    # ---------------------------------------------------------------- steps
    def compile_step(self, step, *, donate=()):
        """``jax.jit`` of ``step``, donating the buffers of the arguments named in ``donate``, traced
        with float32 products (see the module's docstring; the precision is part of JAX's cache key)."""
        jax, jitted = self._jax, self._jax.jit(step, donate_argnames=tuple(donate))

        def run(*args, **kwargs):
            with jax.default_matmul_precision("float32"):
                return jitted(*args, **kwargs)

        return run

    # ---------------------------------------------------------------- products
    def matmul(self, A, B, *, workspace=None):
        """A @ B of network.py in the model's precision: with a workspace (the loop's large
        products) under tf32 on TF32 tensor cores, under bf16 of bf16 copies with FP32 accumulation
        into a float32 result; otherwise in the dtype's own precision."""
        jnp, lax = self.xp, self._jax.lax
        if workspace is None or self.precision == "float32":
            return jnp.matmul(A, B, precision=lax.Precision.HIGHEST)
        if self.precision == "tf32":
            return jnp.matmul(A, B, precision=lax.DotAlgorithmPreset.TF32_TF32_F32)
        return jnp.matmul(A.astype(jnp.bfloat16), B.astype(jnp.bfloat16), preferred_element_type=A.dtype)

    def affine(self, A, W, b):
        """S2 = A1 W2 + b2 in the dtype's own precision (inference too, outside a compiled step)."""
        return self.xp.matmul(A, W, precision=self._jax.lax.Precision.HIGHEST) + b
