"""Reading and writing ``.caffemodel`` files with the protobuf library.

The message classes are built at runtime from a ``FileDescriptorProto`` holding only the fields a
weight converter needs (field numbers as in Caffe's caffe.proto, restated in
../shared/spec/dfnet-architecture.md), so no protoc step and no copy of caffe.proto are needed.
Fields we do not declare (layer parameters, phases, ...) are skipped by the parser.

* ``NetParameter``: ``name`` = 1, ``layer`` = 100 (``LayerParameter``), ``layers`` = 2 (old
  ``V1LayerParameter``).
* ``LayerParameter``: ``name`` = 1, ``type`` = 2, ``blobs`` = 7.
* ``V1LayerParameter``: ``name`` = 4, ``type`` = 5 (an enum; read as its number), ``blobs`` = 6.
* ``BlobProto``: legacy ``num``/``channels``/``height``/``width`` = 1..4, ``data`` = 5 (packed
  float), ``shape`` = 7 (``BlobShape``: ``dim`` = 1, packed int64).

Host side (protobuf comes with onnx).
"""

import os
from typing import Any, List, NamedTuple, Tuple

import numpy as np

from ..errors import UserError

PACKAGE = "dfseg_caffe"


class CaffeLayer(NamedTuple):
    name: str
    type: str
    blobs: List[np.ndarray]  # float32, shaped


def _build_classes() -> Tuple[Any, Any, Any, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(name="dfseg_caffe_min.proto", package=PACKAGE, syntax="proto2")

    def message(name: str, fields: List[Tuple[str, int, int, int, str, bool]]) -> None:
        msg = file_proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            entry = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = ".{}.{}".format(PACKAGE, type_name)
            if packed:
                entry.options.packed = True

    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    message("BlobShape", [("dim", 1, field.TYPE_INT64, repeated, "", True)])
    message("BlobProto", [
        ("num", 1, field.TYPE_INT32, optional, "", False),
        ("channels", 2, field.TYPE_INT32, optional, "", False),
        ("height", 3, field.TYPE_INT32, optional, "", False),
        ("width", 4, field.TYPE_INT32, optional, "", False),
        ("data", 5, field.TYPE_FLOAT, repeated, "", True),
        ("shape", 7, field.TYPE_MESSAGE, optional, "BlobShape", False),
    ])
    message("LayerParameter", [
        ("name", 1, field.TYPE_STRING, optional, "", False),
        ("type", 2, field.TYPE_STRING, optional, "", False),
        ("blobs", 7, field.TYPE_MESSAGE, repeated, "BlobProto", False),
    ])
    message("V1LayerParameter", [
        ("name", 4, field.TYPE_STRING, optional, "", False),
        ("type", 5, field.TYPE_INT32, optional, "", False),
        ("blobs", 6, field.TYPE_MESSAGE, repeated, "BlobProto", False),
    ])
    message("NetParameter", [
        ("name", 1, field.TYPE_STRING, optional, "", False),
        ("layers", 2, field.TYPE_MESSAGE, repeated, "V1LayerParameter", False),
        ("layer", 100, field.TYPE_MESSAGE, repeated, "LayerParameter", False),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)

    def cls(name: str) -> Any:
        descriptor = pool.FindMessageTypeByName("{}.{}".format(PACKAGE, name))
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(descriptor)
        return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf < 4.21

    return cls("NetParameter"), cls("LayerParameter"), cls("BlobProto"), cls("BlobShape")


_CLASSES = None  # type: Any


def message_classes() -> Tuple[Any, Any, Any, Any]:
    """(NetParameter, LayerParameter, BlobProto, BlobShape), built once."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build_classes()
    return _CLASSES


def _blob_array(blob: Any, where: str) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # legacy 4-D blob; Caffe stores 1-D and 2-D ones with leading 1s
        shape = (blob.num, blob.channels, blob.height, blob.width)
    data = np.asarray(blob.data, dtype=np.float32)
    if any(d < 0 for d in shape):
        raise UserError("{}: blob shape {} has a negative dimension; the caffemodel is damaged".format(
            where, list(shape)))
    values = 1
    for d in shape:  # Python integers: np.prod would wrap around for a damaged 2**40 x 2**40 shape
        values *= d
    if values != data.size:
        raise UserError("{}: blob shape {} holds {} values but the blob has {}".format(where, list(shape), values,
                                                                                      data.size))
    return data.reshape(shape)


def read_caffemodel(path: str) -> List[CaffeLayer]:
    """Every layer of a ``.caffemodel`` (new or V1 format) with its blobs as float32 arrays."""
    from google.protobuf.message import DecodeError

    if os.path.isdir(path):
        raise UserError("{}: is a folder; give the released .caffemodel file".format(path))
    if not os.path.isfile(path):
        raise UserError("{}: caffemodel file not found".format(path))
    net_class = message_classes()[0]
    net = net_class()
    with open(path, "rb") as stream:
        data = stream.read()
    try:
        net.ParseFromString(data)
    except DecodeError as exc:
        raise UserError("{}: not a Caffe binary NetParameter ({})".format(path, exc)) from None

    def read_layer(layer: Any, type_text: str) -> CaffeLayer:
        return CaffeLayer(layer.name, type_text,
                          [_blob_array(b, "{}: layer {}".format(path, layer.name)) for b in layer.blobs])

    # Current layers, then the V1 ones of old files (their type is an enum number).
    layers = [read_layer(layer, layer.type) for layer in net.layer]
    layers += [read_layer(layer, "V1:{}".format(layer.type)) for layer in net.layers]
    if not layers:
        raise UserError("{}: holds no layers; is it a .caffemodel (not a .prototxt)?".format(path))
    return layers


def write_caffemodel(path: str, layers: List[CaffeLayer], name: str = "dfseg") -> None:
    """Write ``layers`` as a binary NetParameter (new format, ``BlobShape`` shapes), atomically."""
    from ..fileio import write_atomic

    net_class, _, _, _ = message_classes()
    net = net_class(name=name)
    for layer in layers:
        entry = net.layer.add(name=layer.name, type=layer.type)
        for array in layer.blobs:
            blob = entry.blobs.add()
            blob.shape.dim.extend(int(d) for d in array.shape)
            blob.data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    write_atomic(path, net.SerializeToString())
