"""Replaying a step as a CUDA graph: the cupy backend's ``compile_step``.

A :class:`GraphReplayer` wraps a step (a function of device arrays, dicts and tuples of them, and
Python scalars). The first call with a given *signature* (every array's address, shape, strides
and dtype, and every scalar's value) runs eagerly; the second records the step once with CuPy's
stream capture (``stream.begin_capture()`` ... ``stream.end_capture()`` on a non-blocking stream, as
CuPy's documentation of ``Stream.begin_capture`` shows; see also the README section "Precision and CUDA graphs (GPU)") and
launches the graph; later calls with that signature only launch it (``graph.launch(stream=...)``)
and return the outputs recorded at capture, whose buffers the replay rewrites. The steps update
parameters and velocities in place, so their buffers, and with them the signature, stay the same
from epoch to epoch; the loop's two alternating snapshots give two signatures, hence two graphs.

Memory: the warm-up call and the capture allocate from a memory pool private to the replayer,
which nothing outside it uses; the recorded addresses therefore stay reserved for the graphs while
the replayer lives (the rule CuPy's capture needs: no allocation the graph does not own). Anything
that cannot be captured (CuPy's own cuBLAS calls refuse capture) makes the replayer fall back to
eager calls for good, with the reason in :attr:`GraphReplayer.fallback_reason` and one warning.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["ENV_VAR", "graphs_enabled", "GraphReplayer", "GraphCaptureWarning", "signature"]

#: FASTMLP_CUDA_GRAPHS=0 turns replay off (any other value, or none, leaves it to the argument)
ENV_VAR = "FASTMLP_CUDA_GRAPHS"
#: at most this many graphs per step (the full-batch loop needs two, mini-batches two)
MAX_GRAPHS = 4


def graphs_enabled(cuda_graphs):
    """Whether steps may be replayed: not when ``cuda_graphs`` is False or FASTMLP_CUDA_GRAPHS=0."""
    return cuda_graphs is not False and os.environ.get(ENV_VAR, "").strip() != "0"


def signature(value, address):
    """A hashable description of a step's arguments: arrays by address and layout, the rest by
    value. ``address(value)``: an array's device address, None for anything else."""
    if isinstance(value, dict):
        return ("dict", tuple((k, signature(v, address)) for k, v in value.items()))
    if isinstance(value, (tuple, list)):
        return ("seq", tuple(signature(v, address) for v in value))
    where = address(value)
    if where is not None:
        return ("array", where, value.shape, value.strides, value.dtype.str)
    return ("value", type(value).__name__, value)


class GraphCaptureWarning(UserWarning):
    """A step could not be captured as a CUDA graph; it runs eagerly (the message says why)."""


class GraphReplayer:
    """``step`` run eagerly once per signature, then captured once and replayed."""

    def __init__(self, step, cupy, stream):
        self.step, self._cupy, self.stream = step, cupy, stream
        self._pool = cupy.cuda.MemoryPool()
        self._seen = set()  # signatures run once eagerly (pool and plans warm)
        self._graphs = {}  # signature -> (graph, outputs recorded at capture)
        self.fallback_reason = None
        self.replays = 0

    def __call__(self, *args):
        """Run the step on the replayer's stream, ordered after the caller's stream's queued work
        and before whatever the caller queues next (CUDA events, no host wait)."""
        caller = self._cupy.cuda.get_current_stream()
        self.stream.wait_event(caller.record())
        outputs = self._run(args)
        caller.wait_event(self.stream.record())
        return outputs

    def _run(self, args):
        key = signature(args, lambda v: v.data.ptr if isinstance(v, self._cupy.ndarray) else None)
        entry = self._graphs.get(key)
        if entry is not None:
            graph, outputs = entry
            graph.launch(stream=self.stream)
            self.replays += 1
            return outputs
        if self.fallback_reason is not None or len(self._graphs) >= MAX_GRAPHS:
            return self._eager(args)
        if key not in self._seen:
            self._seen.add(key)
            with self._cupy.cuda.using_allocator(self._pool.malloc):
                return self._eager(args)
        return self._capture(key, args)

    def _eager(self, args):
        with self.stream:
            return self.step(*args)

    def _capture(self, key, args):
        """Record the step once (nothing runs while recording), then launch the graph."""
        cupy = self._cupy
        try:
            with cupy.cuda.using_allocator(self._pool.malloc), self.stream:
                self.stream.begin_capture()
                try:
                    outputs = self.step(*args)
                finally:
                    graph = self.stream.end_capture()
        except Exception as exc:
            self.fallback_reason = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"this step runs without CUDA graphs: capture failed ({self.fallback_reason})",
                GraphCaptureWarning,
                stacklevel=3,
            )
            return self._eager(args)
        self._graphs[key] = (graph, outputs)
        graph.launch(stream=self.stream)
        return outputs
