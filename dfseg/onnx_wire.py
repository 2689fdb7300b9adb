"""The few facts the device side reads from an ONNX file without the onnx package (JetPack 4.6.1 has
none, and pip cannot build it there): the model's metadata and its node names in graph order.

An ONNX file is a protobuf ``ModelProto`` (onnx/onnx.proto: ``metadata_props = 14`` of
``StringStringEntryProto {key = 1; value = 2}``, ``graph = 7``; ``GraphProto.node = 1``;
``GraphProto.initializer = 5``; ``NodeProto.name = 3``, ``op_type = 4``; ``TensorProto.data_type = 2``).  The protobuf wire format is read field by field and
everything else (weights above all) is skipped by its length, so nothing large is decoded.

Device side: Python 3.6, no torch, no onnx.
"""

from typing import Dict, Iterator, List, Tuple

from .errors import UserError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
MODEL_GRAPH, MODEL_METADATA = 7, 14
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
TENSOR_DATA_TYPE = 2
NODE_NAME, NODE_OP_TYPE = 3, 4
ENTRY_KEY, ENTRY_VALUE = 1, 2


class WireFormatError(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def _varint(data: memoryview, pos: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: memoryview) -> Iterator[Tuple[int, int, memoryview]]:
    """(field number, wire type, payload) of each field of one message; varints as their bytes."""
    pos = 0
    while pos < len(data):
        tag, start = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            _, pos = _varint(data, start)
        elif wire == FIXED64:
            pos = start + 8
        elif wire == FIXED32:
            pos = start + 4
        elif wire == LENGTH_DELIMITED:
            length, start = _varint(data, start)
            pos = start + length
        else:
            raise WireFormatError("wire type {} (groups are not used by ONNX)".format(wire))
        if pos > len(data) or number == 0:
            raise WireFormatError("field {} runs past the end".format(number))
        yield number, wire, data[start:pos]


def _strings(message: memoryview, wanted: Tuple[int, ...]) -> Dict[int, str]:
    found = {}
    for number, wire, payload in fields(message):
        if number in wanted and wire == LENGTH_DELIMITED:
            found[number] = bytes(payload).decode("utf-8", "replace")
    return found


class OnnxSummary:
    """The metadata and the node names (and op types) of an ONNX model, read from its bytes."""

    def __init__(self, path: str) -> None:
        try:
            with open(path, "rb") as handle:
                data = memoryview(handle.read())
        except OSError as exc:
            raise UserError("{}: cannot read the ONNX model ({})".format(path, exc.strerror or exc)) from None
        self.metadata = {}  # type: Dict[str, str]
        self.nodes = []  # type: List[Tuple[str, str]]  (name, op_type) in graph order
        self.initializer_types = []  # type: List[int]  TensorProto.DataType of each initializer
        try:
            for number, wire, payload in fields(data):
                if wire != LENGTH_DELIMITED:
                    continue
                if number == MODEL_METADATA:
                    entry = _strings(payload, (ENTRY_KEY, ENTRY_VALUE))
                    self.metadata[entry.get(ENTRY_KEY, "")] = entry.get(ENTRY_VALUE, "")
                elif number == MODEL_GRAPH:
                    self._read_graph(payload)
        except WireFormatError as exc:
            raise UserError("{}: not a valid ONNX model ({}); export one with dfseg-export".format(path, exc)) from None

    def _read_graph(self, graph: memoryview) -> None:
        for field, kind, payload in fields(graph):
            if field == GRAPH_NODE and kind == LENGTH_DELIMITED:
                text = _strings(payload, (NODE_NAME, NODE_OP_TYPE))
                self.nodes.append((text.get(NODE_NAME, ""), text.get(NODE_OP_TYPE, "")))
            elif field == GRAPH_INITIALIZER and kind == LENGTH_DELIMITED:
                self.initializer_types.append(next(
                    (_varint(value, 0)[0] for number, wire, value in fields(payload)
                     if number == TENSOR_DATA_TYPE and wire == VARINT), 0))

    @property
    def op_types(self) -> List[str]:
        return [op_type for _, op_type in self.nodes]

    @property
    def node_names(self) -> List[str]:
        return [name for name, _ in self.nodes]
