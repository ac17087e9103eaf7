"""What each layer and readout receives from the converted layers before it, through its link.

A layer or readout reads either static values (the ANN's, at the calibration points: direct encoding) or
a link L of earlier layers' decoded outputs (``links.py``)::

    series   e(t) = L(u_s(t), ...)          [T, N, m]   what a spiking layer's neurons integrate
    mean     ē    = L(ū_s, ...)             [N, m]      what a refit or a readout fits to

(ē is the time average of e(t): L commutes with it).  A plain chain's link is the identity of one layer.
"""

from __future__ import annotations

import numpy as np

from ..links import Link
from ..structure import SpikingLayer, Structure
from .layer import LayerTrace, flat


def link_series(link: Link, traces: list[LayerTrace], ann: dict[str, np.ndarray]) -> np.ndarray:
    """e(t) [T, N, m] from the source layers' decoded series."""
    return link.evaluate([traces[s].series for s in link.sources], ann)


def link_mean(link: Link, traces: list[LayerTrace], ann: dict[str, np.ndarray]) -> np.ndarray:
    """ē [N, m] from the source layers' decoded means."""
    return flat(link.evaluate([traces[s].mean for s in link.sources], ann))


def layer_inputs(spec: SpikingLayer, traces: list[LayerTrace], ann: dict[str, np.ndarray]) -> np.ndarray:
    """The layer's input: static [N, m] (the ANN's values) or its link's series [T, N, m]."""
    return flat(ann[spec.affine.input]) if spec.static else link_series(spec.link, traces, ann)


def feeds_spiking(structure: Structure, k: int) -> bool:
    """Whether a later spiking layer integrates layer k's series (through its link)."""
    return any(other.link is not None and k in other.link.sources for other in structure.layers)


def readout_mean(structure: Structure, affine, traces: list[LayerTrace], ann: dict[str, np.ndarray]) -> np.ndarray:
    """The readout's input ē [N, m]."""
    return link_mean(structure.input_link(affine), traces, ann)


def decoded_means(structure: Structure, traces: list[LayerTrace], ann: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The decoded step tensors that analog nodes read (``Structure.decoded``), [N, w] each."""
    return [link_mean(link, traces, ann) for link in structure.decoded]
