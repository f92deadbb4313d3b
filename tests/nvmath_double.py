"""The test double of nvmath-python's stateful ``Matmul`` (``nvmath.linalg.advanced``), on the CUDA
double of :mod:`.cuda_double`.

Written from nvmath-python 1.0.0's own source. ``nvmath/linalg/advanced/matmulmod.py``:
``Matmul.plan`` asks cuBLASLt for algorithms inside ``utils.cuda_call_ctx(stream_holder,
blocking=True)``, which records an event on the stream and waits for it on the host; ``execute``
creates the epilogue's outputs with ``utils.create_empty_tensor`` in the stream's context (CuPy's
current allocator), launches, and keeps the event ``cuda_call_ctx`` recorded after the launch as
``last_compute_event``; ``free`` calls ``self.workspace.release(self.last_compute_event)``, and
``Workspace.release`` (``nvmath/_internal/workspace.py``) makes the stream the workspace was
allocated on wait for that event (``self.stream.wait(last_compute_event)``) unless it is None; an
in-place result takes C's layout (``get_result_traits``); a plan with no algorithm raises
``RuntimeError("Planning failed to find any suitable algorithm.")``.
``nvmath/linalg/_internal/epilog_protocol.py``: the ReLU mask's shape (``relu_aux_mm_shape``) and
column order, DRELU's checks of it (uint8, that shape, stride 1 along M, K > 1), the bias's shape.
"""

from __future__ import annotations

import enum
import functools

import numpy as np

from .cuda_double import WORKSPACE_BYTES, _module, _plain

NO_ALGORITHM = "Planning failed to find any suitable algorithm."


class MatmulEpilog(enum.IntEnum):
    """The epilogues the backend uses (cublaslt.Epilogue's values)."""

    BIAS = 4
    RELU_AUX_BIAS = 134
    DRELU_BGRAD = 152


class MatmulComputeType(enum.IntEnum):
    COMPUTE_32F = 68
    COMPUTE_32F_FAST_TF32 = 77


class InvalidMatmulState(Exception):
    pass


#: epilogue -> the inputs it needs
NEEDS = {MatmulEpilog.BIAS: {"bias"}, MatmulEpilog.RELU_AUX_BIAS: {"bias"}, MatmulEpilog.DRELU_BGRAD: {"relu_aux"}}
#: the epilogues whose result must be column-major (their handlers' ``order`` is COL)
COLUMN_MAJOR = {MatmulEpilog.RELU_AUX_BIAS, MatmulEpilog.DRELU_BGRAD}


def order(array):
    """'COL' or 'ROW', as nvmath's ``get_matrix_layout_traits`` reads a matrix's strides (in
    elements; the first dimension is looked at first, so (M, 1) with unit strides is COL)."""
    (rows, columns), (s0, s1) = array.shape, (s // array.itemsize for s in array.strides)
    if s0 == 1:
        return "COL"
    if s1 == 1:
        return "ROW"
    if rows == 1:
        return "COL"
    if columns == 1:
        return "ROW"
    raise ValueError("Unsupported layout.")


def relu_aux_shape(m, n):
    """The bit-packed ReLU mask of an M×N result: uint8 of (round_up(⌈M/8⌉, 16), N)."""
    rows = -(-m // 8)
    return rows + (16 - rows) % 16, n


def pack(bits, shape):
    """M×N booleans -> the mask: bit i of byte r of column n is row 8r + i."""
    padded = np.zeros((shape[0] * 8, shape[1]), bool)
    padded[: bits.shape[0]] = bits
    return np.packbits(padded, axis=0, bitorder="little")


def unpack(mask, m):
    return np.unpackbits(mask, axis=0, bitorder="little")[:m].astype(bool)


class Matmul:
    """``Matmul(a, b, c=c, beta=0, options={"inplace": True, ...}, stream=s)``: c = a @ b (+ epilogue)."""

    def __init__(self, a, b, /, c=None, *, alpha=None, beta=None, qualifiers=None, options=None, stream=None, double):
        options = dict(options or {})
        if not options.get("inplace") or c is None:
            raise NotImplementedError("the double models in-place products (inplace=True with C) only")
        (M, K), (K_inner, N) = a.shape, b.shape
        if K_inner != K or c.shape != (M, N):
            raise ValueError(f"operand shapes do not match: A {a.shape}, B {b.shape}, C {c.shape}")
        for operand in (a, b, c):
            order(operand)
        if a.dtype != b.dtype:
            raise ValueError(f"The dtype of operands A {a.dtype} and B {b.dtype} must be the same.")
        if options.get("compute_type") == MatmulComputeType.COMPUTE_32F_FAST_TF32 and a.dtype != np.float32:
            raise ValueError(f"COMPUTE_32F_FAST_TF32 needs float32 operands, got {a.dtype}")
        self._double, self.operands, self.shape = double, (a, b, c), (M, N, K)
        self.epilog, self.epilog_inputs, self.mm_planned = None, {}, False
        self.workspace = self.workspace_stream = self.last_compute_event = None
        self.valid_state = True
        double.plans.append(self)

    def _check_valid(self):
        if not self.valid_state:
            raise InvalidMatmulState("The Matmul object cannot be used after resources are free'd")

    def plan(self, *, preferences=None, algorithms=None, epilog=None, epilog_inputs=None, stream=None):
        self._check_valid()
        double = self._double
        stream = stream or double.current_stream
        inputs = dict(epilog_inputs or {}) if epilog is not None else {}
        if epilog is not None:
            self._check_epilog(epilog, inputs)
        if stream.is_capturing():
            double.plans_made_while_capturing.append((getattr(epilog, "name", None), self.shape))
        stream.record().synchronize()  # cuda_call_ctx(blocking=True) around the heuristic query
        if epilog is not None and (epilog.name, self.operands[0].dtype.name) in double.refused:
            raise RuntimeError(NO_ALGORITHM)
        self.epilog, self.epilog_inputs, self.mm_planned = epilog, inputs, True
        return ()

    def _check_epilog(self, epilog, inputs):
        M, N, K = self.shape
        if set(inputs) != NEEDS[epilog]:
            raise ValueError(f"The epilog {epilog.name} requires the input tensors {NEEDS[epilog]}, got {set(inputs)}")
        bias = inputs.get("bias")
        if bias is not None and (bias.shape != (M,) or bias.strides[0] != bias.itemsize):
            raise ValueError(f"The bias {bias.shape} must be a contiguous vector of the M dimension ({M}) of A.")
        mask = inputs.get("relu_aux")
        if mask is not None:
            if K == 1:
                raise ValueError("K=1 is not supported for DRELU epilogs")
            if mask.dtype != np.uint8 or mask.shape != relu_aux_shape(M, N) or mask.strides[0] != 1:
                raise ValueError(
                    f"The RELU auxiliary input must be uint8 of MM shape {relu_aux_shape(M, N)} with stride 1 along M; "
                    f"got {mask.dtype} {mask.shape} strides {mask.strides}"
                )
        if epilog in COLUMN_MAJOR and order(self.operands[2]) == "ROW":
            raise RuntimeError(NO_ALGORITHM)  # the in-place result is row-major like C; the epilogue needs COL

    def execute(self, *, algorithm=None, release_workspace=False, stream=None):
        self._check_valid()
        if not self.mm_planned:
            raise RuntimeError("Execution cannot be performed before plan() has been called.")
        double = self._double
        stream = stream or double.current_stream
        with stream:  # nvmath allocates in the stream's context, through CuPy's current allocator
            if self.workspace is None:
                self.workspace, self.workspace_stream = double.malloc(WORKSPACE_BYTES), stream
            aux = self._aux_outputs()
        a, b, c = self.operands
        plain = _plain((a, b, c, self.epilog_inputs, aux))
        touched = [a, b, c, *self.epilog_inputs.values(), *aux.values()]
        stream.run(lambda: self._compute(*plain), touched, blocks=[self.workspace.block])
        self.last_compute_event = stream.record()
        return (c, aux) if aux else c

    def _aux_outputs(self):
        M, N, _ = self.shape
        if self.epilog == MatmulEpilog.RELU_AUX_BIAS:
            return {"relu_aux": self._double.empty(relu_aux_shape(M, N), np.uint8, order="F")}
        if self.epilog == MatmulEpilog.DRELU_BGRAD:
            return {"drelu_bgrad": self._double.empty((M,), self.operands[2].dtype)}
        return {}

    def _compute(self, a, b, c, inputs, aux):
        accumulate = np.float64 if c.dtype == np.float64 else np.float32
        D = a.astype(accumulate) @ b.astype(accumulate)  # M×N (BF16 operands accumulate in FP32)
        if "bias" in inputs:
            D += inputs["bias"][:, None]  # along the result's rows
        if self.epilog == MatmulEpilog.RELU_AUX_BIAS:
            aux["relu_aux"][...] = pack(D > 0, aux["relu_aux"].shape)
            D = np.maximum(D, 0)  # NaN stays NaN
        if self.epilog == MatmulEpilog.DRELU_BGRAD:
            D = np.where(unpack(inputs["relu_aux"], D.shape[0]), D, 0)
            aux["drelu_bgrad"][...] = D.sum(axis=1)
        c[...] = D

    def free(self):
        if not self.valid_state:
            return
        try:
            if self.last_compute_event is not None:  # "ordered after the computation"
                self.workspace_stream.wait_event(self.last_compute_event)
                self.last_compute_event = None
            self.workspace = self.operands = None
            self.epilog_inputs = {}
        finally:
            self.valid_state = False


def nvmath_module(double):
    advanced = _module(
        "nvmath.linalg.advanced",
        Matmul=functools.partial(Matmul, double=double),
        MatmulEpilog=MatmulEpilog,
        MatmulComputeType=MatmulComputeType,
    )
    return _module("nvmath", __version__="1.0.0-test-double", linalg=_module("nvmath.linalg", advanced=advanced))
