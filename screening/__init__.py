"""Transaction screening service: wires features/ and graph/ to gRPC, storage and config."""

__all__: list[str] = []
