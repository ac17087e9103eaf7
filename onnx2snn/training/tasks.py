"""Shipped training tasks with exact solutions, seeded.

=================  ===========================================================  ====================
name               target                                                       network
=================  ===========================================================  ====================
x2                 u(x) = x² on [-1, 1]; 100 equispaced training points, 1000     1-64×4-1 (the paper's
                   test points (the paper's group's set-up)                        group's)
ricker             u(x) = (1 - 2π²ν²x²)·exp(-π²ν²x²), ν = 1 (a Ricker wavelet)    1-64×3-1
                   on [-1, 1]; 200 training points, 1000 test points
deeponet-poisson   the operator f -> u of -u'' = f on [-1, 1], u(±1) = 0, f a     branch 51-64-64-64,
                   Gaussian random field (ℓ = 0.2) on 51 sensors, u on 101         trunk 1-64-64-64
                   points (``poisson_operator``); 1000 training functions (seed
                   0), 200 test functions (seed 1); minibatches of 50 functions
separable-2d       u(x, y) = sin(πx)·sin(πy) + ½·sin(3πx)·sin(2πy) on [-1, 1]²;     1-32-32-16 per axis
                   a 64×64 training grid, a 200×200 test grid
=================  ===========================================================  ====================

Errors: MLP tasks, the relative L2 error over all test points; product tasks, the mean over test
functions (or the one test grid) of each one's relative L2 error (the DeepONet literature's figure).
Product targets are divided by their RMS ``scale`` for training (outputs of order one); the saved
network multiplies it back (``scaled_params``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .network import initial_mlp
from .parameters import SpikingDeepONetParams
from .poisson_operator import poisson_operator_data

TASKS = ("x2", "ricker", "deeponet-poisson", "separable-2d")


@dataclass
class Task:
    """A data set and the network to fit it.  ``train``/``test``: (inputs, target) as torch tensors;
    inputs are x [B, n] for MLP tasks and (a [F, m], c [P, d]) for product tasks."""

    name: str
    kind: str                    # "mlp" or "product"
    widths: list[int] | tuple[list[int], list[int]]
    train: tuple
    test: tuple
    sigma: float                 # the Gaussian surrogate's default width
    batch_rows: int | None = None
    scale: float = 1.0
    per_row_error: bool = False  # the test error: each row's relative L2, averaged (a DeepONet's functions)

    def initial(self, timesteps: int, *, readout: str = "analog", leak: float = 1.0, seed: int = 0):
        if self.kind == "mlp":
            return initial_mlp(self.widths, timesteps, readout=readout, leak=leak, seed=seed)
        first, second = self.widths
        return SpikingDeepONetParams(initial_mlp(first, timesteps, readout=readout, leak=leak, seed=seed),
                                     initial_mlp(second, timesteps, readout=readout, leak=leak, seed=seed + 1))

    def box(self) -> list[tuple[float, float]]:
        """The artifact's input domain: per input column (product tasks: the first net's, then the
        second's), the training inputs' range."""
        columns = [self.train[0]] if self.kind == "mlp" else list(self.train[0])
        lo = torch.cat([c.min(0).values for c in columns])
        hi = torch.cat([c.max(0).values for c in columns])
        return [(float(l), float(h)) for l, h in zip(lo, hi)]

    def batches(self, rng: np.random.Generator):
        """Endless minibatches (inputs, target): the whole training set, or epochs of ``batch_rows``
        shuffled rows (points; a product task's functions, each with all its points)."""
        inputs, target = self.train
        if self.batch_rows is None:
            while True:
                yield inputs, target
        first = inputs if self.kind == "mlp" else inputs[0]
        n = first.shape[0]
        while True:
            order = torch.from_numpy(rng.permutation(n))
            for start in range(0, n - self.batch_rows + 1, self.batch_rows):
                rows = order[start:start + self.batch_rows]
                yield (first[rows] if self.kind == "mlp" else (first[rows], inputs[1])), target[rows]

    def test_error(self, prediction: torch.Tensor) -> float:
        """‖ŷ - u‖/‖u‖ over all test points, or its mean over rows (``per_row_error``)."""
        target = self.test[1]
        if not self.per_row_error:
            return float(torch.linalg.norm(prediction - target) / torch.linalg.norm(target))
        per_row = torch.linalg.norm(prediction - target, dim=1) / torch.linalg.norm(target, dim=1)
        return float(per_row.mean())

    def scaled_params(self, params):
        """Saved parameters with the target scale folded into the second net's analog readout."""
        if self.kind == "mlp" or self.scale == 1.0:
            return params
        for net in (params.trunk, params.branch):
            if net.readout == "analog":
                net.layers[-1].weight = net.layers[-1].weight * self.scale
                net.layers[-1].bias = net.layers[-1].bias * self.scale
                return params
        raise ValueError("a product network with rate readouts on both nets cannot carry the output scale; "
                         "use an analog readout")


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """A float64 torch tensor of ``a`` (sharing its memory where it is contiguous float64)."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _line(n: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n)[:, None]


def ricker(x: np.ndarray, nu: float = 1.0) -> np.ndarray:
    a = (np.pi * nu * x) ** 2
    return (1 - 2 * a) * np.exp(-a)


def separable_solution(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """u on the grid x × y: [len(x), len(y)]."""
    x, y = np.ravel(x)[:, None], np.ravel(y)[None, :]
    return np.sin(np.pi * x) * np.sin(np.pi * y) + 0.5 * np.sin(3 * np.pi * x) * np.sin(2 * np.pi * y)


def load_task(name: str) -> Task:
    if name == "x2":
        train, test = _line(100), _line(1000)
        return Task(name, "mlp", [1, 64, 64, 64, 64, 1], (as_tensor(train), as_tensor(train ** 2)),
                    (as_tensor(test), as_tensor(test ** 2)), 0.5)
    if name == "ricker":
        train, test = _line(200), _line(1000)
        return Task(name, "mlp", [1, 64, 64, 64, 1], (as_tensor(train), as_tensor(ricker(train))),
                    (as_tensor(test), as_tensor(ricker(test))), 0.5)
    if name == "deeponet-poisson":
        train = poisson_operator_data(1000, seed=0)
        test = poisson_operator_data(200, seed=1)
        scale = float(np.sqrt(np.mean(train.u ** 2)))
        return Task(name, "product", ([51, 64, 64, 64], [1, 64, 64, 64]),
                    ((as_tensor(train.f), as_tensor(train.points[:, None])), as_tensor(train.u / scale)),
                    ((as_tensor(test.f), as_tensor(test.points[:, None])), as_tensor(test.u / scale)), 0.3,
                    batch_rows=50, scale=scale, per_row_error=True)
    if name == "separable-2d":
        train, test = _line(64), _line(200)
        return Task(name, "product", ([1, 32, 32, 16], [1, 32, 32, 16]),
                    ((as_tensor(train), as_tensor(train)), as_tensor(separable_solution(train, train))),
                    ((as_tensor(test), as_tensor(test)), as_tensor(separable_solution(test, test))), 0.5)
    raise ValueError(f"unknown training task {name!r}: expected one of {', '.join(TASKS)} or a specification file")
