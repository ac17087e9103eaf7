"""snnTorch's ``StreamOps`` for delta-coded artifacts (``runtimes.stream``): every node in torch on
``device``, standard nodes by ``snntorch_backend.torch_kernel``, each delta layer a ``SignedIF`` stepped
once per row (``SignedIF.delta_step``), carrying r from row to row.

Spikes equal the numpy reference's bit for bit given the same activations (the neuron does the same float
operations); activations may differ in the last bit where torch's MatMul sums in another order than
numpy's, which moves a unit's decision only when its change lands within that bit of a level.
"""

from __future__ import annotations

import numpy as np
import torch

from .neuron import NeuronParams
from .snntorch_backend import SignedIF, _to_torch, torch_kernel


class TorchStreamOps:
    name = "snntorch"

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def array(self, x):
        return None if x is None else _to_torch(x, self.device)

    def numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def kernel(self, node, values: dict):
        f = torch_kernel(node, values, node._opsets.get("", 13), self.device)
        return lambda inputs: f(inputs, [False] * len(inputs))[0]

    def layer(self, p: NeuronParams, name: str):
        return _TorchDelta(p, name, self.device)


class _TorchDelta:
    """One delta layer in torch: ``scan`` as ``stream._NumpyDelta.scan``, on torch tensors."""

    def __init__(self, p: NeuronParams, name: str, device: torch.device):
        self.neuron = SignedIF(p.bias, p.theta_pos, p.theta_neg, True, p.fire_fraction, name=name,
                               coding=p.coding).to(device)
        self.v0 = _to_torch(p.v0, device)

    @torch.inference_mode()
    def scan(self, a: torch.Tensor, state):
        sent = self.v0.expand(a.shape[1:] + (1,)).clone() if state is None else state
        x = a.unsqueeze(-1) + self.neuron.bias
        s_out, r_out = torch.empty_like(x), torch.empty_like(x)
        counts = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        for t in range(len(x)):
            s_out[t], sent, counts[t] = self.neuron.delta_step(x[t], sent)
            r_out[t] = sent
        flat = counts.reshape(len(x), -1)
        per_row = flat.sum(1).to(torch.int64).cpu().numpy()
        changes = torch.count_nonzero(flat, dim=1).cpu().numpy().astype(np.int64)
        return s_out, r_out, sent, per_row, changes
