"""The official Hugging Face client, ``huggingface_hub``, run in a child process that can reach only the endpoint it is given.

huggingface_hub reads its settings (endpoint, cache, offline mode) from the
environment once, at import, so each call runs in a new interpreter (the
test venv's: huggingface_hub is a test extra) with an environment built here
from nothing the user set: ``HF_ENDPOINT`` always names a loopback address
(a port nothing listens on when no endpoint is given), so no call can reach
huggingface.co; ``HF_HOME`` and ``HF_HUB_CACHE`` are the test's own, so no
token file or cache of the user's is read; no proxy variable is passed on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HfCallFailed", "HfClient", "NOWHERE"]

# The discard port on loopback: nothing listens there, so a client told to go online fails at once and locally.
NOWHERE = "http://127.0.0.1:9"

_CALLS = r"""
import json, sys
requests = json.load(sys.stdin)
import huggingface_hub
results = []
for request in requests:
    try:
        result = getattr(huggingface_hub, request["function"])(*request["args"], **request["kwargs"])
    except Exception as error:
        json.dump({"error": type(error).__name__, "message": str(error), "results": results}, sys.stdout)
        sys.exit(3)
    try:
        json.dumps(result)
    except TypeError:
        result = str(result)
    results.append(result)
sys.stdout.write(json.dumps({"results": results}))
"""


class HfCallFailed(Exception):
    """The call raised in the child: ``error`` is the exception's class name (``RepositoryNotFoundError``, ...)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message


@dataclass(frozen=True)
class HfClient:
    python: str = sys.executable

    def environment(self, home: Path, endpoint: str | None = None, *, offline: bool = False, token: str | None = None) -> dict[str, str]:
        """The child's whole environment: HF_HOME ``home``, its cache ``home/hub``, HF_ENDPOINT ``endpoint`` (or ``NOWHERE``);
        HF_HUB_OFFLINE=1 only if ``offline``; HF_TOKEN only if ``token``."""
        env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
        env.update(
            HOME=str(home),  # nothing under the user's home (~/.cache/huggingface/token, ~/.netrc)
            HF_HOME=str(home),
            HF_HUB_CACHE=str(home / "hub"),
            HF_ENDPOINT=endpoint or NOWHERE,
            HF_HUB_DISABLE_TELEMETRY="1",
            NO_PROXY="*",
            PYTHONDONTWRITEBYTECODE="1",
        )
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    def call(self, function: str, *args: Any, home: Path, endpoint: str | None = None, offline: bool = False, token: str | None = None, **kwargs: Any) -> Any:
        """``huggingface_hub.<function>(*args, **kwargs)`` in a child (arguments and result as JSON; a result JSON cannot
        hold comes back as its ``str``); HfCallFailed if it raises, RuntimeError if the child dies otherwise."""
        return self.calls([(function, args, kwargs)], home=home, endpoint=endpoint, offline=offline, token=token)[0]

    def calls(
        self, requests: list[tuple[str, tuple[Any, ...], dict[str, Any]]], *, home: Path, endpoint: str | None = None, offline: bool = False, token: str | None = None
    ) -> list[Any]:
        """The results of several calls, (function, args, kwargs) each, made in turn in one child (importing huggingface_hub
        costs most of a call); HfCallFailed for the first that raises."""
        proc = subprocess.run(
            [self.python, "-c", _CALLS],
            input=json.dumps([{"function": f, "args": list(a), "kwargs": k} for f, a, k in requests]).encode(),
            capture_output=True,
            env=self.environment(home, endpoint, offline=offline, token=token),
            timeout=120,
        )
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError(f"huggingface_hub died (exit {proc.returncode}):\n{proc.stderr.decode(errors='replace')}") from None
        if "error" in answer:
            raise HfCallFailed(answer["error"], answer["message"])
        return answer["results"]
