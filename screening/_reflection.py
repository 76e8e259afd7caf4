"""Server reflection under both names clients ask for: ``grpc.reflection.v1`` (grpcurl, Postman
and current grpc libraries) and ``grpc.reflection.v1alpha`` (older tools).

grpcio-reflection ships only the v1alpha service. The v1 contract is the same messages with the
same field numbers under another package, so one servicer answers both: the v1 service decodes
and encodes with the v1alpha message classes (the bytes are identical), and a v1 copy of the
descriptor file goes into the pool so reflection can also describe the v1 service itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "enable_reflection"]

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(server: grpc.Server, service_names: Iterable[str]) -> None:
    """Serve reflection (v1 and v1alpha) on ``server``, listing ``service_names`` and both
    reflection services."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.ReflectionServicer(names, pool=pool)
    for service in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME):
        handler = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),))


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Put grpc/reflection/v1/reflection.proto in ``pool`` (the v1alpha file renamed), unless
    a v1 file is already there."""
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old = f".{proto.package}."
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")

    def rename(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = ".grpc.reflection.v1." + field.type_name.removeprefix(old)
        for nested in message.nested_type:
            rename(nested)

    for message in proto.message_type:
        rename(message)
    for service in proto.service:
        for method in service.method:
            method.input_type = ".grpc.reflection.v1." + method.input_type.removeprefix(old)
            method.output_type = ".grpc.reflection.v1." + method.output_type.removeprefix(old)
    pool.Add(proto)
