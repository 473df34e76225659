"""The OCI image-spec's JSON Schemas, read from ../shared/oci-schema beside the checkout.

The schemas are draft-04 and refer to each other by file name, resolved
against their own ``id`` URLs (https://opencontainers.org/schema/...). All of
them go into one ``referencing`` Registry keyed by file name, and any URL is
answered by the file of the same base name, so every reference resolves
offline.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SCHEMA_DIR", "validator"]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "oci-schema"


def validator(schema_file: str):
    """A jsonschema validator for one schema file (e.g. ``image-manifest-schema.json``)."""
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource
    from referencing.jsonschema import DRAFT4

    documents = {p.name: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")}

    def resource(name: str) -> Resource:
        return Resource.from_contents(documents[name], default_specification=DRAFT4)

    def retrieve(uri: str) -> Resource:
        name = uri.rstrip("#").rsplit("/", 1)[-1]
        if name not in documents:
            raise NoSuchResource(ref=uri)
        return resource(name)

    registry = Registry(retrieve=retrieve).with_resources((name, resource(name)) for name in documents)
    schema = documents[schema_file]
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, registry=registry)
