"""Replaying a step as a CUDA graph: the cupy backend's ``compile_step``.

A :class:`GraphReplayer` wraps a step (a function of device arrays, dicts and tuples of them, and
Python scalars). The first call with a given *signature* (every array's address, shape, strides
and dtype, and every scalar's value) runs eagerly; the second records the step once with CuPy's
stream capture (``stream.begin_capture()`` ... ``stream.end_capture()`` on a non-blocking stream, as
CuPy's documentation of ``Stream.begin_capture`` shows; see also docs/backends.md, "CUDA graphs") and
launches the graph; later calls with that signature only launch it (``graph.launch(stream=...)``)
and return the outputs recorded at capture, whose buffers the replay rewrites. The steps update
parameters and velocities in place, so their buffers, and with them the signature, stay the same
from epoch to epoch; the loop's two alternating snapshots give two signatures, hence two graphs.

Memory: the warm-up call and the capture allocate from a memory pool private to the replayer,
which nothing outside it uses, and every block allocated while recording is held with its graph
for the graph's lifetime (the rule CuPy's capture needs: no allocation the graph does not own). A
graph writes the addresses it recorded at each launch, also those of arrays the step only used in
passing (the epilogues' outputs, CuPy's temporaries): were they returned to the pool, a later
allocation could take them, or the pool could give them back to CUDA before retrying an
allocation that failed. Anything that cannot be captured (CuPy's own cuBLAS calls refuse capture,
and so does anything that waits for the device) makes the replayer fall back to eager calls for
good, with the reason in :attr:`GraphCounts.fallbacks` and one warning.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field

__all__ = ["ENV_VAR", "graphs_enabled", "GraphReplayer", "GraphCounts", "GraphCaptureWarning", "signature"]

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


@dataclass
class GraphCounts:
    """What a backend's replayers did: graphs captured and launched, and why a step runs eagerly."""

    captured: int = 0
    replays: int = 0
    fallbacks: list[str] = field(default_factory=list)


class GraphReplayer:
    """``step`` run eagerly once per signature, then captured once and replayed. ``counts``: the
    :class:`GraphCounts` to add to (the backend's)."""

    def __init__(self, step, cupy, stream, counts=None):
        self.step, self._cupy, self.stream = step, cupy, stream
        self.counts = counts if counts is not None else GraphCounts()
        self._pool = cupy.cuda.MemoryPool()
        self._seen = set()  # signatures run once eagerly (pool and plans warm)
        self._graphs = {}  # signature -> (graph, outputs recorded at capture, blocks allocated while recording)
        self.fallback_reason = None

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
            graph, outputs, _ = entry
            graph.launch(stream=self.stream)
            self.counts.replays += 1
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
        held = []  # every block allocated while recording: the graph writes it at each launch

        def malloc(size):
            memory = self._pool.malloc(size)
            held.append(memory)
            return memory

        try:
            with self._cupy.cuda.using_allocator(malloc), self.stream:
                graph, outputs = self._record(args)
        except Exception as exc:
            self._fall_back(f"{type(exc).__name__}: {exc}")
            return self._eager(args)
        self._graphs[key] = (graph, outputs, held)
        self.counts.captured += 1
        graph.launch(stream=self.stream)
        return outputs

    def _record(self, args):
        """(graph, outputs) of the step recorded on the stream; a failure inside ends the capture
        and is the one raised (not the capture's own complaint about being cut short)."""
        self.stream.begin_capture()
        try:
            outputs = self.step(*args)
        except BaseException:
            with contextlib.suppress(Exception):  # the capture is abandoned either way; the step's error says why
                self.stream.end_capture()
            raise
        return self.stream.end_capture(), outputs

    def _fall_back(self, reason):
        self.fallback_reason = reason
        self.counts.fallbacks.append(reason)
        warnings.warn(
            f"this step runs without CUDA graphs: capture failed ({reason})", GraphCaptureWarning, stacklevel=5
        )
