"""A test double of the parts of CuPy, nvmath-python and CUDA that the cupy backend relies on.

It lets the real :class:`fastmlp.backends.cupy_.CupyBackend` (its fused products, CUDA-graph replay
and release) run on the CPU, and it refuses what a GPU refuses where the GPU path can go wrong:

* **Streams and capture** (CuPy's ``Stream.begin_capture``/``end_capture``/``is_capturing``; CUDA's
  rules for stream capture). Work issued to a capturing stream is recorded, not run, and runs at
  each ``graph.launch``. While a stream captures, synchronising it or the device, or reading a
  value on the host, is an error that invalidates the capture (``cudaErrorStreamCaptureUnsupported``).
  An event recorded during capture is a *captured* event: synchronising it is an error
  (``cudaErrorCapturedEvent``), and so is a stream outside the capture waiting for it, or a capture
  waiting for an event recorded outside it (``cudaErrorStreamCaptureIsolation``).
* **Memory** (CuPy's ``MemoryPool``, ``using_allocator``). Arrays live in blocks of a pool; a freed
  block of the same rounded size is handed out again, the last freed first; ``free_all_blocks``
  gives the free blocks back to CUDA. A graph launch (or any work) touching a block given back
  faults (``cudaErrorIllegalAddress``): a replayed graph writes the addresses it recorded, whoever
  owns them now. Allocation beyond :attr:`CudaDouble.memory_limit` raises CuPy's OutOfMemoryError.
* **nvmath-python's stateful Matmul** (``nvmath/linalg/advanced/matmulmod.py`` and
  ``nvmath/linalg/_internal/epilog_protocol.py``): ``plan`` synchronises its stream (its
  ``cuda_call_ctx(blocking=True)``), so it fails while the stream captures; ``execute`` allocates
  the epilogue's outputs through CuPy's current allocator, runs on its stream and records
  ``last_compute_event`` there (a captured event when the stream captures); ``free`` makes the
  workspace's stream wait for ``last_compute_event``. An in-place result takes C's layout, and the
  epilogues that need a column-major result (RELU_AUX_BIAS, DRELU_BGRAD) find no algorithm for a
  row-major C. The ReLU mask is bit-packed, uint8 of (round_up(⌈M/8⌉, 16), N), column-major;
  DRELU_BGRAD checks it as nvmath does. BIAS runs along the result's rows.
* **Arrays**: NumPy memory in pool blocks, with CuPy's ``data.ptr``, CuPy's layout rules
  (``empty_like`` lays out an array that is both C- and F-contiguous in C order) and its refusal of
  host NumPy arrays in device operations.

Not modelled: timing, several devices, NumPy reading a device array directly (``np.asarray``),
TF32 rounding, and the rule of cuBLASLt's ReLU mask at exactly 0 (here ``[S > 0]``, the
project's; only a card can tell cuBLASLt's). The kernels compute with NumPy what the CUDA sources
compute; their arithmetic is checked against the sources themselves in ``test_cuda_source.py``.

Use: ``double = CudaDouble(); double.install(monkeypatch)``; then ``backend="cupy"`` runs on it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import itertools
import math
import sys
import time
import types
import weakref

import array_api_compat
import array_api_compat.numpy as numpy_namespace
import numpy as np

#: the size CuPy's pool rounds each allocation up to
ROUND = 512
#: nvmath's workspace for one product (any size: it only has to live in a block)
WORKSPACE_BYTES = 4096


class CUDARuntimeError(RuntimeError):
    """What CuPy raises for a CUDA error (cupy_backends.cuda.api.runtime.CUDARuntimeError)."""


class OutOfMemoryError(MemoryError):
    """CuPy's cupy.cuda.memory.OutOfMemoryError."""

    def __init__(self, size, total):
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes).")


# ---------------------------------------------------------------------------------------- memory
class Block:
    """One range of device memory (a cudaMalloc), backed by host bytes."""

    def __init__(self, size):
        self.buffer = np.full(size, 0xFF, np.uint8)  # not zeros: unwritten floats read as NaN
        self.ptr = self.buffer.ctypes.data
        self.size = size
        self.mapped = True  # False once given back to CUDA


class MemoryPointer:
    """What a pool's ``malloc`` returns; its block goes back to the pool when it is collected."""

    def __init__(self, pool, block):
        self.block, self.ptr = block, block.ptr
        weakref.finalize(self, pool._give_back, block)


class MemoryPool:
    """CuPy's memory pool, simplified: freed blocks are reused by exact rounded size, last freed first."""

    def __init__(self, double):
        self._double = double
        self._free = {}  # rounded size -> [Block]
        double.pools.add(self)

    def malloc(self, size):
        rounded = max(ROUND, -(-size // ROUND) * ROUND)
        free = self._free.get(rounded)
        block = free.pop() if free else self._double._map(rounded)
        return MemoryPointer(self, block)

    def _give_back(self, block):
        self._free.setdefault(block.size, []).append(block)

    def free_all_blocks(self, stream=None):
        """Give every free block back to CUDA (CuPy does this itself before retrying a failed allocation)."""
        for blocks in self._free.values():
            for block in blocks:
                self._double._unmap(block)
        self._free.clear()


# --------------------------------------------------------------------------- streams and events
class Event:
    """A CUDA event; ``captured`` when it was last recorded on a capturing stream."""

    def __init__(self, block=False, disable_timing=False, interprocess=False, *, double=None):
        self._double = double
        self.captured, self.capture, self.time = False, None, None

    def record(self, stream=None):
        (stream or self._double.current_stream).record(self)

    def synchronize(self):
        if self.captured:
            raise CUDARuntimeError(
                "cudaErrorCapturedEvent: operation not permitted on an event last recorded in a capturing stream"
            )
        self._double.check_sticky()


class _Capture:
    def __init__(self):
        self.work = []  # (function, blocks it touches)
        self.invalid = None  # why the capture was invalidated


class Graph:
    """The work recorded by one capture; ``launch`` runs it again."""

    def __init__(self, double, work):
        self._double, self._work = double, work
        self.blocks = {id(block): block for _, blocks in work for block in blocks}.values()

    def launch(self, stream=None):
        double = self._double
        double.launches += 1
        if double.before_launch is not None:
            double.before_launch(double.launches)
        double.check_sticky()
        double.check_mapped(self.blocks, "a graph launch")
        for function, _ in self._work:
            function()


class Stream:
    """A CUDA stream; ``with stream:`` makes it the current one."""

    def __init__(self, null=False, non_blocking=False, ptr=0, *, double=None):
        self._double = double
        self.ptr = 0 if null else next(double._addresses)
        self._capture = None
        double.streams.add(self)

    def __enter__(self):
        self._double._stack.append(self)
        return self

    def __exit__(self, *exc):
        self._double._stack.pop()
        return False

    def run(self, function, arrays=(), blocks=()):
        """Issue ``function`` (work touching ``arrays`` and ``blocks``) on this stream: run it now,
        or record it while the stream captures."""
        blocks = [*(a._block() for a in arrays if isinstance(a, DeviceArray)), *blocks]
        if self._capture is not None:
            if self._capture.invalid:
                raise CUDARuntimeError(f"cudaErrorStreamCaptureInvalidated: {self._capture.invalid}")
            self._capture.work.append((function, blocks))
            return
        self._double.check_sticky()
        self._double.check_mapped(blocks, "a kernel")
        function()

    def record(self, event=None):
        self._double.check_sticky()
        event = event or Event(double=self._double)
        event.captured, event.capture, event.time = self._capture is not None, self._capture, time.perf_counter()
        return event

    def wait_event(self, event):
        if event.captured and event.capture is not self._capture:
            raise CUDARuntimeError(
                "cudaErrorStreamCaptureIsolation: a stream outside a capture waits for an event recorded during it"
            )
        if self._capture is not None and not event.captured:
            raise CUDARuntimeError("cudaErrorStreamCaptureIsolation: a capture waits for an event recorded outside it")

    def synchronize(self):
        self._double.refuse_while_capturing("cudaStreamSynchronize")

    def begin_capture(self, mode=None):
        if self.ptr == 0:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        self._capture = _Capture()

    def end_capture(self):
        capture, self._capture = self._capture, None
        if capture.invalid:
            raise CUDARuntimeError(f"cudaErrorStreamCaptureInvalidated: {capture.invalid}")
        return Graph(self._double, capture.work)

    def is_capturing(self):
        return self._capture is not None


# ---------------------------------------------------------------------------------------- arrays
class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


def _plain(value):
    """Device arrays (also inside lists, tuples, dicts) -> NumPy views of their blocks' bytes."""
    if isinstance(value, DeviceArray):
        block = value._block()
        offset = value.__array_interface__["data"][0] - block.ptr
        return np.ndarray(value.shape, value.dtype, buffer=block.buffer, offset=offset, strides=value.strides)
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"Unsupported type {type(value)}")  # CuPy refuses host arrays in device operations
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _arrays_in(value):
    if isinstance(value, DeviceArray):
        return [value]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays_in(v)]
    if isinstance(value, dict):
        return _arrays_in(list(value.values()))
    return []


#: NumPy functions that return views: they keep the device array's block
_VIEWS = {np.reshape, np.transpose, np.squeeze, np.expand_dims, np.swapaxes, np.moveaxis, np.broadcast_to}


class DeviceArray(np.ndarray):
    """A CuPy ndarray of the double: NumPy memory inside a pool block; every operation is issued
    to the current stream (recorded while it captures) and every result is allocated from the
    current allocator."""

    _memory: MemoryPointer | None = None
    _double: CudaDouble | None = None

    def __array_finalize__(self, obj):
        memory, address = getattr(obj, "_memory", None), self.__array_interface__["data"][0]
        inside = memory is not None and memory.block.ptr <= address < memory.block.ptr + memory.block.size
        self._memory = memory if inside else None  # a copy NumPy made on the host is no device array
        self._double = getattr(obj, "_double", None)

    def _block(self):
        assert self._memory is not None, "an array the double does not model (NumPy copied a device array)"
        return self._memory.block

    @property
    def data(self):
        self._block()
        return _Pointer(self.__array_interface__["data"][0])

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return self._double.call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in _VIEWS:
            return func._implementation(*args, **kwargs)
        return self._double.call(func, args, kwargs)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return self._double.call(lambda x: x.astype(dtype, casting=casting), (self,), {})

    def copy(self, order="C"):
        return self._double.call(lambda x: x.copy(), (self,), {})

    def get(self, stream=None, out=None):
        return self._double.read(self, out)

    def item(self, *args):
        return self.get().item(*args)

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __bool__(self):
        return bool(self.get())

    def __index__(self):
        return int(self.get())


# ------------------------------------------------------------------------------------ the device
class CudaDouble:
    """One simulated GPU: its streams, pools, plans and faults, and the modules that stand in for
    ``cupy``, ``cupyx``, ``nvmath`` and ``array_api_compat.cupy``."""

    def __init__(self, *, memory_limit=2**40):
        self._addresses = itertools.count(0x1000, 0x10)
        self.memory_limit, self.mapped_bytes = memory_limit, 0
        self.pools = weakref.WeakSet()
        self.streams = weakref.WeakSet()
        self.null_stream = Stream(null=True, double=self)
        self._stack = []
        self.allocator = None  # the current allocator (None: the default pool's)
        self.default_pool = MemoryPool(self)
        self.launches = 0
        self.before_launch = None  # called with the launch count before each graph launch (fault injection)
        self.sticky = None  # a sticky CUDA error: every later call fails with it
        self.faults = []  # the errors raised for the sticky fault, in order
        self.plans = []  # every Matmul made, in order
        self.plans_made_while_capturing = []  # (epilog, operand shapes) of plans attempted during a capture
        self.refused = set()  # (epilog name, dtype name) cuBLASLt is to refuse
        self.host_memory_error = None  # a MemoryError the next copy to the host raises

    # ---- state
    @property
    def current_stream(self):
        return self._stack[-1] if self._stack else self.null_stream

    def capturing_streams(self):
        return [stream for stream in self.streams if stream.is_capturing()]

    def check_sticky(self):
        if self.sticky is not None:
            error = CUDARuntimeError(self.sticky)
            self.faults.append(error)
            raise error

    def fault(self, message="cudaErrorIllegalAddress: an illegal memory access was encountered"):
        """A sticky error from now on (as after an illegal address): raised now and by every later call."""
        self.sticky = message
        self.check_sticky()

    def check_mapped(self, blocks, what):
        gone = [hex(b.ptr) for b in blocks if not b.mapped]
        if gone:
            raise CUDARuntimeError(
                f"cudaErrorIllegalAddress: {what} touches memory its pool gave back to CUDA ({', '.join(gone)})"
            )

    def refuse_while_capturing(self, what):
        """``what`` waits for the device (or reads it on the host): an error on a capturing stream."""
        capturing = self.capturing_streams()
        for stream in capturing:
            stream._capture.invalid = stream._capture.invalid or f"{what} during capture"
        if capturing:
            raise CUDARuntimeError(
                f"cudaErrorStreamCaptureUnsupported: {what} is not permitted when a stream is capturing"
            )
        self.check_sticky()

    # ---- memory
    def _map(self, size):
        if self.mapped_bytes + size > self.memory_limit:
            raise OutOfMemoryError(size, self.mapped_bytes)
        self.mapped_bytes += size
        return Block(size)

    def _unmap(self, block):
        block.mapped = False
        self.mapped_bytes -= block.size

    def malloc(self, size):
        """Through the current allocator (CuPy's ``cupy.cuda.alloc``)."""
        return (self.allocator or self.default_pool.malloc)(size)

    def empty(self, shape, dtype=np.float32, order="C"):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = np.dtype(dtype)
        memory = self.malloc(max(1, math.prod(shape)) * dtype.itemsize)
        layout = np.empty(shape, dtype, order=order)  # only for its strides
        array = np.ndarray.__new__(DeviceArray, shape, dtype, buffer=memory.block.buffer, strides=layout.strides)
        array._memory, array._double = memory, self
        return array

    def empty_like(self, prototype, dtype=None, order="K", shape=None):
        if order == "K":  # CuPy's rule (cupy/_core/internal.pyx, _update_order_char)
            order = "C" if prototype.flags.c_contiguous else "F" if prototype.flags.f_contiguous else "C"
        return self.empty(prototype.shape if shape is None else shape, dtype or prototype.dtype, order=order)

    @contextlib.contextmanager
    def using_allocator(self, allocator=None):
        previous, self.allocator = self.allocator, allocator
        try:
            yield
        finally:
            self.allocator = previous

    # ---- work
    def call(self, function, args, kwargs):
        """``function(*args, **kwargs)`` as device work on the current stream; the result is a new
        device array (or ``out``)."""
        arrays = _arrays_in((args, kwargs))
        plain_args, plain_kwargs = _plain(tuple(args)), _plain(dict(kwargs))
        stream = self.current_stream
        if kwargs.get("out") is not None:
            stream.run(lambda: function(*plain_args, **plain_kwargs), arrays)
            return kwargs["out"][0] if isinstance(kwargs["out"], tuple) else kwargs["out"]
        sample = function(*plain_args, **plain_kwargs)  # the result's shape and dtype; no device memory written
        if not isinstance(sample, (np.ndarray, np.generic)):
            return sample
        result = self.empty(np.shape(sample), np.asarray(sample).dtype)
        target = _plain(result)
        if stream.is_capturing():
            stream.run(lambda: np.copyto(target, function(*plain_args, **plain_kwargs)), [*arrays, result])
        else:
            stream.run(lambda: np.copyto(target, sample), [*arrays, result])
        return result

    def upload(self, host, dtype=None):
        """A host array copied to a new device array (cupy.asarray)."""
        if isinstance(host, DeviceArray):
            return host if dtype is None else host.astype(dtype)
        self.refuse_while_capturing("a copy from pageable host memory")
        host = np.asarray(host, dtype=dtype)
        array = self.empty(host.shape, host.dtype)
        _plain(array)[...] = host
        return array

    def read(self, array, out=None):
        """A device array copied to the host (cupy.asnumpy), waiting for the device."""
        self.refuse_while_capturing("a copy to the host")
        if self.host_memory_error is not None:
            error, self.host_memory_error = self.host_memory_error, None
            raise error
        self.check_mapped([array._block()], "a copy to the host")
        value = _plain(array)
        if out is None:
            return value.copy()
        out[...] = value
        return out

    # ---- the modules
    def install(self, monkeypatch):
        """Make ``import cupy`` (and ``cupyx``, ``nvmath``, ``array_api_compat.cupy``) import this double."""
        from .nvmath_double import nvmath_module

        modules = {
            "cupy": cupy_module(self),
            "cupyx": _module("cupyx", empty_pinned=lambda shape, dtype=np.float64: np.empty(shape, dtype)),
            "nvmath": nvmath_module(self),
            "array_api_compat.cupy": _Namespace(self),
        }
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(array_api_compat, "cupy", modules["array_api_compat.cupy"], raising=False)
        return modules


# ------------------------------------------------------------------------------------- kernels
def _bias_relu(b, s):
    v = s + b
    s[...] = np.where(v < 0, 0, v)  # NaN stays NaN


def _relu_backward(a, g):
    g[...] = np.where(a > 0, g, 0)


def _add_bias(b, s):
    s += b


def _momentum(g, lr, mu, p, v):
    v[...] = mu * v + lr * g
    p -= v


def _row_softmax_xent(S, labels, n, k, want_grad, d2, row_loss, row_hit):
    shifted = S.astype(np.float64) - S.max(axis=1, keepdims=True)  # N×K
    log_z = np.log(np.exp(shifted).sum(axis=1))  # N
    rows = np.arange(n)
    row_loss[:] = log_z - shifted[rows, labels]
    row_hit[:] = S.argmax(axis=1) == labels  # the first maximum, as the kernel
    if want_grad:
        P = np.exp(shifted - log_z[:, None])
        P[rows, labels] -= 1.0
        d2[...] = P / n


#: the element-wise kernels by the name the backend gives them
ELEMENTWISE = {
    "fastmlp_bias_relu": _bias_relu,
    "fastmlp_relu_backward": _relu_backward,
    "fastmlp_add_bias": _add_bias,
    "fastmlp_momentum": _momentum,
}


class ElementwiseKernel:
    """cupy.ElementwiseKernel: ``kernel(*inputs, *outputs)`` writes the outputs in place."""

    def __init__(self, in_params, out_params, operation, name="kernel", *, double):
        self._double, self._function = double, ELEMENTWISE[name]  # KeyError: a kernel the double lacks
        self._inputs = len(in_params.split(","))

    def __call__(self, *args):
        plain = _plain(args)
        self._double.current_stream.run(lambda: self._function(*plain), _arrays_in(args))
        outputs = args[self._inputs :]
        return outputs[0] if len(outputs) == 1 else outputs


class RawKernel:
    def __init__(self, double, function):
        self._double, self._function = double, function

    def __call__(self, grid, block, args):
        n = int(args[2])
        assert grid[0] * block[0] >= n, "the launch covers fewer threads than rows"
        plain = _plain(tuple(args))
        self._double.current_stream.run(lambda: self._function(*plain), _arrays_in(args))


class RawModule:
    """cupy.RawModule holding the row kernel's two instantiations."""

    def __init__(self, code=None, options=(), name_expressions=(), *, double):
        self._double = double
        assert "row_softmax_xent" in code, "a raw module the double lacks"

    def get_function(self, name):
        return RawKernel(self._double, _row_softmax_xent)


# ------------------------------------------------------------------------------------- modules
def _module(name, **attributes):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attributes)
    return module


class _Device:
    """cupy.cuda.Device."""

    def __init__(self, device=None, *, double):
        self.id, self._double = 0, double

    def synchronize(self):
        self._double.refuse_while_capturing("cudaDeviceSynchronize")


def _runtime(double):
    return _module(
        "cupy.cuda.runtime",
        CUDARuntimeError=CUDARuntimeError,
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device: {"name": b"CUDA test double"},
        memGetInfo=lambda: (double.memory_limit - double.mapped_bytes, double.memory_limit),
        runtimeGetVersion=lambda: 12080,
        driverGetVersion=lambda: 12080,
    )


def _cuda_module(double):
    def elapsed_ms(start, stop):
        if start.captured or stop.captured:
            raise CUDARuntimeError("cudaErrorCapturedEvent: elapsed time of an event recorded in a capture")
        return (stop.time - start.time) * 1e3

    bind = functools.partial
    return _module(
        "cupy.cuda",
        runtime=_runtime(double),
        memory=_module("cupy.cuda.memory", OutOfMemoryError=OutOfMemoryError),
        Stream=bind(Stream, double=double),
        Event=bind(Event, double=double),
        Device=bind(_Device, double=double),
        MemoryPool=bind(MemoryPool, double),
        get_current_stream=lambda: double.current_stream,
        get_elapsed_time=elapsed_ms,
        using_allocator=double.using_allocator,
        alloc=double.malloc,
    )


def cupy_module(double):
    """The ``cupy`` module of the double: what the cupy backend and its replayer call."""

    def take(array, indices, axis=None, out=None):
        return double.call(np.take, (array, indices), {"axis": axis, "out": out})

    def copyto(dst, src, casting="same_kind"):
        plain_dst, plain_src = _plain(dst), _plain(src)
        double.current_stream.run(lambda: np.copyto(plain_dst, plain_src, casting=casting), [dst, src])

    def ascontiguousarray(array, dtype=None):
        if array.flags.c_contiguous and (dtype is None or np.dtype(dtype) == array.dtype):
            return array
        return double.call(lambda x: np.ascontiguousarray(x, dtype=dtype), (array,), {})

    return _module(
        "cupy",
        __version__="14.0.0-test-double",
        ndarray=DeviceArray,
        cuda=_cuda_module(double),
        float32=np.float32,
        float64=np.float64,
        int64=np.int64,
        uint8=np.uint8,
        asarray=double.upload,
        asnumpy=lambda array, stream=None, out=None: double.read(array, out),
        empty=double.empty,
        empty_like=double.empty_like,
        zeros=lambda shape, dtype=np.float64: _filled(double, shape, dtype, 0),
        ones=lambda shape, dtype=np.float64: _filled(double, shape, dtype, 1),
        take=take,
        copyto=copyto,
        ascontiguousarray=ascontiguousarray,
        ElementwiseKernel=functools.partial(ElementwiseKernel, double=double),
        RawModule=functools.partial(RawModule, double=double),
        get_default_memory_pool=lambda: double.default_pool,
    )


def _filled(double, shape, dtype, value):
    array = double.empty(shape, dtype)
    plain = _plain(array)
    double.current_stream.run(lambda: plain.fill(value), [array])
    return array


class _Namespace(types.ModuleType):
    """``array_api_compat.cupy`` of the double: creation functions allocate device arrays; the
    rest is array_api_compat's NumPy namespace, whose calls reach the device arrays' operations."""

    def __init__(self, double):
        super().__init__("array_api_compat.cupy")
        self.__spec__ = importlib.machinery.ModuleSpec("array_api_compat.cupy", None)
        self._double = double

    def empty(self, shape, dtype=None, device=None):
        return self._double.empty(shape, dtype or np.float64)

    def full(self, shape, fill_value, dtype=None, device=None):
        return _filled(self._double, shape, dtype or np.float64, fill_value)

    def zeros(self, shape, dtype=None, device=None):
        return _filled(self._double, shape, dtype or np.float64, 0)

    def asarray(self, obj, dtype=None, device=None, copy=None):
        return self._double.upload(obj, dtype)

    def __getattr__(self, name):
        return getattr(numpy_namespace, name)
