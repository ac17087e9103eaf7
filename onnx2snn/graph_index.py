"""Read-only index of an ONNX graph: producers, consumers, constants, shapes."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import onnx
from onnx import numpy_helper

from .batch_rows import row_features


class GraphIndex:
    """``producer[t]`` → node, ``consumers[t]`` → nodes, ``constants[t]`` → array, for a ModelProto."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in self.constants]
        self.outputs = [o.name for o in graph.output]
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.order = {id(n): k for k, n in enumerate(self.nodes)}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)

    @cached_property
    def row_features(self) -> dict[str, tuple[int, ...]]:
        """The row tensors ([batch, *features], ``batch_rows``) and their features; inferred on first use."""
        return row_features(self.model)

    def attrs(self, node: onnx.NodeProto) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        if len(users) == 1 and name not in self.outputs:
            return users[0]
        return None
