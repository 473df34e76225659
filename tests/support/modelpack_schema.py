"""The CNCF ModelPack config JSON Schema, read from ../shared/modelpack-schema beside the checkout.

Draft 2020-12, self-contained (its references are to its own ``$defs``), and
it forbids unknown keys: a config that passes is one ModelPack readers take.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CONFIG_SCHEMA", "config_validator"]

CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / ".." / "shared" / "modelpack-schema" / "config-schema.json"


def config_validator():
    """A jsonschema validator of ModelPack configs that checks the formats jsonschema can (``date-time`` needs rfc3339-validator)."""
    from jsonschema import Draft202012Validator, FormatChecker

    schema = json.loads(CONFIG_SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())
