"""The idiomatic PyTorch loop for the same epoch, as a reference row of ``fastmlp bench --peers``.

Not part of fastmlp: what a PyTorch user would write instead. ``nn.Linear`` layers, ``optim.SGD``
with momentum, ``F.cross_entropy`` and autograd; the training metrics from the step's own forward
pass, the validation metrics from an evaluation forward under ``torch.no_grad()``, and the four
metrics copied to the host once — the work of fastmlp's epoch. (PyTorch's SGD puts the learning
rate after the velocity, v <- m v + g; θ <- θ - lr v: the same cost as fastmlp's form.)

Precision bf16: the one line a PyTorch user adds, ``torch.autocast("cpu", dtype=torch.bfloat16)``
around the forward passes and the loss (autocast runs the products in bf16 and keeps their bf16
outputs; the parameters and the optimizer stay float32); its floor is the three products under
autocast too, casts included.
"""

import functools
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: the fastmlp backend this loop is compared with
BACKEND = "torch"
TITLE = "torch own loop"
#: the precisions this loop can compute in (bf16: under autocast)
PRECISIONS = ("float32", "bf16")


class Runner:
    """One configuration of the loop: data and model on the CPU, ready to time."""

    def __init__(self, *, n, n_valid, hidden, dtype, precision="float32", seed=0, n_in=784, n_out=10):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.dtype = getattr(torch, dtype)
        self.X = torch.from_numpy(rng.random((n, n_in))).to(self.dtype)  # N×D
        self.labels = torch.from_numpy(rng.integers(0, n_out, n))  # N
        self.X_valid = torch.from_numpy(rng.random((n_valid, n_in))).to(self.dtype)  # Nv×D
        self.labels_valid = torch.from_numpy(rng.integers(0, n_out, n_valid))  # Nv
        self.model = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)).to(self.dtype)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self._d1 = torch.randn(n, hidden, dtype=self.dtype) * 1e-3  # N×H stand-in for d1
        self.precision = precision
        self._autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def describe(self):
        autocast = {"autocast": "bfloat16"} if self.precision == "bf16" else {}
        return {"library": f"torch {torch.__version__}", "threads": torch.get_num_threads(), **autocast}

    def _accuracy(self, logits, labels):
        return (logits.argmax(dim=1) == labels).to(logits.dtype).mean()

    def epoch(self):
        """Seconds of one epoch: step on the training set, validation metrics, one copy to the host."""
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad()
        with self._autocast():
            logits = self.model(self.X)
            loss = F.cross_entropy(logits, self.labels)
        loss.backward()
        self.optimizer.step()
        self.model.eval()
        with torch.no_grad(), self._autocast():
            valid_logits = self.model(self.X_valid)
            metrics = torch.stack(
                [
                    loss.detach(),
                    self._accuracy(logits.detach(), self.labels),
                    F.cross_entropy(valid_logits, self.labels_valid),
                    self._accuracy(valid_logits, self.labels_valid),
                ]
            )
        metrics.cpu().numpy()  # the one copy to the host
        return time.perf_counter() - start

    def products(self):
        """Seconds of the epoch's three large products alone."""
        W1 = self.model[0].weight  # H×D
        with torch.no_grad(), self._autocast():
            start = time.perf_counter()
            self.X @ W1.T  # N×H
            self.X.T @ self._d1  # D×H
            self.X_valid @ W1.T  # Nv×H
            return time.perf_counter() - start
