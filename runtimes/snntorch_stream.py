"""snnTorch's ``StreamOps`` for delta-coded artifacts (``runtimes.stream``), in float64 on ``device``: the
ops ``stream_math`` specifies by its algorithms in torch (``TorchMath``), the ops exact in IEEE
arithmetic (``stream_math.IEEE_EXACT``) by ``snntorch_backend.torch_kernel``, any other by the numpy
reference's kernel on host copies (so its bits are the reference's); each delta layer a ``SignedIF``
stepped once per row (``SignedIF.delta_step``), carrying r from row to row.

Spikes and outputs therefore equal the numpy reference's bit for bit: every activation is the same
sequence of correctly rounded IEEE operations in both (no library MatMul or tanh), and the neuron does
the same float operations as numpy's.
"""

from __future__ import annotations

import numpy as np
import torch

from . import stream_math
from .neuron import NeuronParams
from .snntorch_backend import SignedIF, _fallback, _to_torch, torch_kernel


class TorchMath:
    """``stream_math.Math`` in torch: the same float64 operations, each correctly rounded (IEEE 754) by
    torch's elementwise kernels on CPU, and on CUDA, whose float64 +, -, ×, ÷ round to nearest; separate
    kernels, so nothing is contracted into an FMA."""

    @staticmethod
    def rint(x):
        return torch.round(x)                  # half to even, as numpy's rint

    @staticmethod
    def floor(x):
        return torch.floor(x)

    @staticmethod
    def where(c, a, b):
        return torch.where(c, a, b)

    @staticmethod
    def clip(x, lo, hi):
        return torch.clamp(x, lo, hi)

    @staticmethod
    def pow2(n):
        n = torch.where(torch.isnan(n), torch.zeros_like(n), n)
        return ((n.to(torch.int64) + 1023) << 52).view(torch.float64)

    @staticmethod
    def permute(x, order):
        return x.permute(*order)

    @staticmethod
    def moveaxis(x, source, destination):
        return torch.movedim(x, source, destination)

    @staticmethod
    def zeros(shape, like):
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def host(x) -> np.ndarray:
        return x.detach().cpu().numpy()


class TorchStreamOps:
    name = "snntorch"

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def array(self, x):
        return None if x is None else _to_torch(x, self.device)

    def numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def kernel(self, node, values: dict):
        specified = stream_math.kernel(node.proto, TorchMath)
        if specified is not None:
            return specified
        if node.proto.op_type in stream_math.IEEE_EXACT:
            f = torch_kernel(node, values, node._opsets.get("", 13), self.device)
        else:
            f = _fallback(node, self.device)
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
