"""Descriptor: the OCI record that points at a blob by media type, digest and size."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from .digest import Digest, parse_digest

__all__ = ["Descriptor", "string_map", "MAX_SIZE", "MANIFEST_TYPE", "INDEX_TYPE", "DOCKER_MANIFEST_TYPE", "DOCKER_LIST_TYPE", "EMPTY_TYPE", "EMPTY_DESCRIPTOR", "EMPTY_BYTES"]

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
# Docker's schema 2 counterparts, which registries serve and Ollama writes.
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_BYTES = b"{}"
# The OCI descriptor's size is an int64, as a TOML integer (a lockfile's size) is. Not checked by from_json, whose
# every caller must agree with index.json's fast reader; a size past it is refused where a remote states one and a
# lockfile would pin it (the Hub's listing, lock).
MAX_SIZE = (1 << 63) - 1


class Descriptor(NamedTuple):
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = MappingProxyType({})
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "Descriptor":
        """Read a descriptor from parsed JSON; raise ValueError (or InvalidDigest) if it is not one."""
        if not isinstance(obj, dict):
            raise ValueError("a descriptor must be a JSON object")
        media_type, size = obj.get("mediaType"), obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ValueError("descriptor without a mediaType")
        if type(size) is not int or size < 0:
            raise ValueError("descriptor size must be a non-negative integer")
        annotations = string_map(obj.get("annotations", {}), "descriptor annotations")
        artifact_type = obj.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise ValueError("artifactType must be a string")
        return cls(media_type, parse_digest(obj.get("digest")), size, annotations, artifact_type)


def string_map(obj: Any, what: str) -> dict[str, str]:
    """``obj`` if it is a JSON object of strings to strings (annotations); ValueError naming ``what`` otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"{what} must map strings to strings")
    # A plain loop: twice the speed of all() over a generator, and index.json
    # holds a descriptor per name.
    for key, value in obj.items():
        if type(key) is not str or type(value) is not str:
            raise ValueError(f"{what} must map strings to strings")
    return obj


EMPTY_DESCRIPTOR = Descriptor(
    EMPTY_TYPE,
    Digest("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
    len(EMPTY_BYTES),
)
