"""Registry credentials: the login a user already has for a registry host, from the files and helpers docker and podman use (spec/remotes.md#registry-credentials).

Looked up per registry host (``HOST[:PORT]``), in this order:
``$ODAI_STORE_REGISTRY_AUTH`` (a path to an auth file, as podman's and
skopeo's ``--authfile``), else the Docker config (``$DOCKER_CONFIG/config.json``
or ``~/.docker/config.json``): its ``credHelpers`` entry for the host, else its
``credsStore``, each a program ``docker-credential-<name>`` asked with
``get``; else its ``auths`` entry. Reads are bounded and a helper is given
a deadline: both are the user's, but a broken one must not hang a fetch.

A Login is a secret: it never appears in a message, a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UsageError, from_os_error
from ..fs.bounded import Refused, read_bounded

__all__ = ["Login", "RegistryCredentials", "auth_file", "load_registry_credentials", "registry_host"]

MAX_AUTH_FILE_BYTES = 1 << 20  # docker's config.json holds a few logins and settings
MAX_HELPER_OUTPUT = 64 << 10  # one JSON object with a token
HELPER_TIMEOUT = 30.0  # a helper may ask a keychain, which may ask the user
# Docker Hub's logins are stored under its first API's URL, whatever host a reference names.
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# A helper's Username that marks Secret as an identity token, not a password.
_IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Login:
    """A user name and password, or an identity token (OAuth2 refresh token) that the registry's token service exchanges."""

    username: str = field(repr=False)
    secret: str = field(repr=False)
    identity_token: bool = False

    def __repr__(self) -> str:
        return "Login(<secret>)"


def registry_host(key: str) -> str:
    """The ``host[:port]`` a key of an auth file stands for (``https://host/v1/``, ``host``), lower-cased; Docker Hub's hosts are one."""
    key = key.strip()
    host = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    host = host.lower()
    return "docker.io" if host in _DOCKER_HUB_HOSTS else host


@dataclass(frozen=True)
class RegistryCredentials:
    """The logins the user's files give, per registry host, and the helpers to ask for others; ``login`` runs a helper only when asked."""

    source: str  # the file read, for messages
    auths: dict[str, Login] = field(default_factory=dict, repr=False)
    helpers: dict[str, str] = field(default_factory=dict)  # host -> helper name (credHelpers)
    store: str | None = None  # credsStore: the helper for every other host

    def login(self, host: str) -> Login | None:
        """The login for registry ``host`` (``HOST[:PORT]``), or None: then the registry is asked anonymously."""
        host = registry_host(host)
        helper = self.helpers.get(host) or self.store
        if helper:
            found = _ask_helper(helper, _DOCKER_HUB_KEY if host == "docker.io" else host)
            if found is not None:
                return found
        return self.auths.get(host)


def auth_file() -> Path:
    """$ODAI_STORE_REGISTRY_AUTH if set, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    explicit = os.environ.get("ODAI_STORE_REGISTRY_AUTH")
    if explicit:
        return Path(explicit)
    docker = os.environ.get("DOCKER_CONFIG")
    return (Path(docker) if docker else Path.home() / ".docker") / "config.json"


def load_registry_credentials() -> RegistryCredentials:
    """The user's registry logins (spec/remotes.md#registry-credentials); none if the file does not exist.

    A file named by $ODAI_STORE_REGISTRY_AUTH must exist: the user named it.
    """
    path = auth_file()
    hint = f"fix {path}: it is JSON with 'auths', 'credHelpers' or 'credsStore' as docker writes it"
    try:
        data = read_bounded(path, MAX_AUTH_FILE_BYTES, "registry auth file", follow=True)
    except FileNotFoundError:
        if os.environ.get("ODAI_STORE_REGISTRY_AUTH"):
            raise UsageError(f"{path}, named by $ODAI_STORE_REGISTRY_AUTH, does not exist", "set it to an auth file, or unset it") from None
        return RegistryCredentials(str(path))
    except Refused as err:
        raise UsageError(err.message, hint) from None
    except OSError as err:
        raise from_os_error(err, f"reading {path}") from err
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise UsageError(f"{path} is not valid JSON", hint) from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path} is not a JSON object", hint)
    auths, helpers, store = doc.get("auths", {}), doc.get("credHelpers", {}), doc.get("credsStore")
    if not isinstance(auths, dict) or not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise UsageError(f"{path}: 'auths' and 'credHelpers' must be objects", hint)
    if store is not None and not isinstance(store, str):
        raise UsageError(f"{path}: 'credsStore' must be a string", hint)
    logins = {}
    for key, entry in auths.items():
        login = _auth_entry(entry)
        if login is not None:
            logins[registry_host(key)] = login
    return RegistryCredentials(str(path), logins, {registry_host(k): v for k, v in helpers.items() if v}, store or None)


def _auth_entry(entry: object) -> Login | None:
    """The login of one ``auths`` entry: ``auth`` (base64 of user:password), or ``identitytoken``; None for an empty one (a helper holds it)."""
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Login("", token, identity_token=True)
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None  # a damaged entry: the registry is asked without it, and says what it wants
    return Login(username, password) if sep else None


def _ask_helper(name: str, server: str) -> Login | None:
    """``docker-credential-<name> get`` for ``server``; None if the helper is missing or has no login for it."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        return None
    try:
        proc = subprocess.run([program, "get"], input=server.encode(), capture_output=True, timeout=HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UsageError(f"docker-credential-{name} did not answer within {HELPER_TIMEOUT:.0f} s", "check the credential helper (docker login works?)") from None
    except OSError as err:
        raise UsageError(f"cannot run docker-credential-{name}: {err.strerror}", "check the credential helper") from None
    if proc.returncode != 0 or len(proc.stdout) > MAX_HELPER_OUTPUT:
        return None  # "credentials not found": the helper's usual answer for a host it has no login for
    try:
        doc = json.loads(proc.stdout)
    except (ValueError, RecursionError):
        return None
    username, secret = (doc.get("Username"), doc.get("Secret")) if isinstance(doc, dict) else (None, None)
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    if username == _IDENTITY_TOKEN_USER:
        return Login("", secret, identity_token=True)
    return Login(username, secret)
