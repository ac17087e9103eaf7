"""onnx2snn's NIR exports in torch through nirtorch (>= 2.6), with the semantics of ``nir_executor``.

nirtorch builds a ``torch.fx`` module from a NIR graph and a node map; a module whose ``forward`` takes a
``state`` is stateful (returns (output, state)); an input of a node with several inputs that is reachable
from the node itself (an export's reset edge into its integrator) is read from the previous call, zero
at the first: the back edge of ``nir_executor``.  ``NODE_MAP`` gives the nodes nirtorch has no module
for (I, Threshold, IF; IF with NIR's reset to v_reset or a subtractive one) and replaces its Affine, whose
bias nirtorch 2.6 drops (it sets ``weight.bias``).  One call of the module is one step.
"""

from __future__ import annotations

import numpy as np


def node_map(if_reset: str = "value") -> dict:
    """NIR node type → module factory for ``nirtorch.nir_to_torch``."""
    import nir
    import torch

    class Integrator(torch.nn.Module):
        """v(t) = v(t-1) + r ⊙ x(t); output v(t)."""

        def __init__(self, r):
            super().__init__()
            self.r = torch.nn.Parameter(torch.as_tensor(r), requires_grad=False)

        def forward(self, x, state=None):
            v = self.r * x if state is None else state + self.r * x
            return v, v

    class Threshold(torch.nn.Module):
        """1 where x > θ, else 0."""

        def __init__(self, threshold):
            super().__init__()
            self.threshold = torch.nn.Parameter(torch.as_tensor(threshold), requires_grad=False)

        def forward(self, x):
            return (x > self.threshold).to(x.dtype)

    class IntegrateFire(torch.nn.Module):
        """u = v + r ⊙ x; spike where u > θ; then v = v_reset (or u - θ with a subtractive reset)."""

        def __init__(self, node):
            super().__init__()
            for key in ("r", "v_threshold", "v_reset"):
                setattr(self, key, torch.nn.Parameter(torch.as_tensor(getattr(node, key)), requires_grad=False))

        def forward(self, x, state=None):
            u = self.r * x if state is None else state + self.r * x
            fired = u > self.v_threshold
            after = u - self.v_threshold if if_reset == "subtract" else self.v_reset.expand_as(u)
            return fired.to(x.dtype), torch.where(fired, after, u)

    def affine(node):
        module = torch.nn.Linear(node.weight.shape[-1], node.weight.shape[-2], bias=True)
        module.weight.data = torch.as_tensor(node.weight)
        module.bias.data = torch.as_tensor(node.bias)
        return module

    return {nir.I: lambda node: Integrator(node.r), nir.Threshold: lambda node: Threshold(node.threshold),
            nir.IF: IntegrateFire, nir.Affine: affine}


def run_nirtorch(graph, inputs: np.ndarray, timesteps: int, record: tuple[str, ...] = (),
                 if_reset: str = "value", dtype=None):
    """Run ``graph`` (one Input, one Output) for T steps on a static input [batch, d] in float64 (or
    ``dtype``): returns (the Output's mean over T [batch, d], {node: [T, batch, C] outputs of the
    ``record``ed nodes})."""
    import nirtorch
    import torch
    dtype = dtype or torch.float64
    module = nirtorch.nir_to_torch(graph, node_map(if_reset), dtype=dtype)
    recorded: dict[str, list] = {name: [] for name in record}
    for name in record:
        module.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: recorded[name].append((out[0] if isinstance(out, tuple) else out).detach()))
    x = torch.as_tensor(np.asarray(inputs), dtype=dtype)
    state, total = None, None
    with torch.no_grad():
        for _ in range(timesteps):
            y, state = module(x, state)
            total = y if total is None else total + y
    steps = {name: torch.stack(values).numpy() for name, values in recorded.items()}
    return (total / timesteps).numpy(), steps
