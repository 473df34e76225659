"""A registry token service of our own on 127.0.0.1: what Distribution's ``auth: token`` trusts (docs/spec/auth/jwt.md of CNCF Distribution).

It answers the two requests of the Docker token spec at ``/token``: a GET
with ``service`` and ``scope`` in the query (anonymous, or with a Basic
login), and the OAuth2 POST of a form (``grant_type=refresh_token``, an
identity token). Each answer is a JWT signed RS256 by a key made here, whose
self-signed certificate the registry trusts (``rootcertbundle``) and the
token carries in its ``x5c`` header: Distribution 2.8 finds the signing key
by ``x5c`` (a chain verified up to its roots), a ``jwk``, or a ``kid`` in
libtrust's own fingerprint format; ``x5c`` needs nothing of libtrust.

A token grants, for each repository of the scope asked, the actions asked
that the user holds (``grants``); anonymous holds none, so the registry
refuses it. ``lifetime`` is how long a token is good for: Distribution
allows 60 s of clock skew past ``exp``, which the issuer takes off, so that a
short lifetime is short. Every request is recorded (``requests``), secrets
left out, for tests to see what the client asked.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["IssuerRequest", "TokenIssuer"]

SERVICE = "odai-test-registry"
ISSUER = "odai-test-issuer"
_LEEWAY = 60  # seconds Distribution accepts a token past its exp (registry/auth/token/token.go, Leeway)


@dataclass
class IssuerRequest:
    """One request to the token service, as received; no password or token is kept, only whether one came and whose it was."""

    method: str
    query: str  # the URL's query, as sent: a secret here would be a leak
    at: float  # time.monotonic()
    user: str | None = None  # whom the login or identity token named; None: anonymous or refused
    grant_type: str | None = None  # of a POST's form
    client_id: str | None = None
    scopes: list[str] = field(default_factory=list)
    status: int = 0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """The token service: ``realm`` is its URL; ``registry_auth()`` is the ``auth: token`` section a registry needs to trust it.

    ``users``: name -> password (a GET's Basic login); ``identity_tokens``:
    refresh token -> name (a POST's); ``grants``: name -> the actions it
    holds on every repository.
    """

    def __init__(
        self,
        base: Path,
        *,
        users: dict[str, str] | None = None,
        identity_tokens: dict[str, str] | None = None,
        grants: dict[str, tuple[str, ...]] | None = None,
        lifetime: float = 300.0,
    ) -> None:
        self.users = users or {}
        self.identity_tokens = identity_tokens or {}
        self.grants = grants or {}
        self.lifetime = lifetime
        self.requests: list[IssuerRequest] = []
        self.issued = 0
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        base.mkdir(parents=True, exist_ok=True)
        self.cert_path = base / "issuer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        handler = type("Handler", (_Handler,), {"issuer": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_auth(self) -> dict[str, str]:
        """Distribution's ``auth: token`` settings for this issuer."""
        return {"realm": self.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(self.cert_path)}

    def token(self, user: str | None, scopes: list[str]) -> str:
        """A JWT for ``user`` (None: anonymous) granting of each ``repository:NAME:ACTIONS`` scope the actions the user holds."""
        held = set(self.grants.get(user, ())) if user is not None else set()
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append({"type": "repository", "name": name, "actions": sorted(held & set(actions.split(",")))})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + int(self.lifetime) - _LEEWAY,
            "nbf": now - 1,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]}
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        with self._lock:
            self.issued += 1
        return f"{signed}.{_b64url(signature)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TokenIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scopes(values: list[str]) -> list[str]:
    """Every scope of ``scope`` parameters, each of which may hold several separated by spaces."""
    return [scope for value in values for scope in value.split()]


class _Handler(BaseHTTPRequestHandler):
    issuer: TokenIssuer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's output is not the place

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        record = self._record("GET", split.query, _scopes(query.get("scope", [])))
        user = None
        given = self.headers.get("Authorization", "")
        if given.startswith("Basic "):
            name, _, password = base64.b64decode(given[6:]).decode().partition(":")
            if self.issuer.users.get(name) != password:
                return self._answer(record, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]})
            user = name
        record.user = user
        token = self.issuer.token(user, record.scopes)
        self._answer(record, 200, {"token": token, "access_token": token, "expires_in": int(self.issuer.lifetime)})

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        record = self._record("POST", split.query, _scopes(form.get("scope", [])))
        record.grant_type = (form.get("grant_type") or [None])[0]
        record.client_id = (form.get("client_id") or [None])[0]
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded" or record.grant_type != "refresh_token":
            return self._answer(record, 400, {"error": "unsupported_grant_type"})
        user = self.issuer.identity_tokens.get((form.get("refresh_token") or [""])[0])
        if user is None or (form.get("service") or [None])[0] != SERVICE:
            return self._answer(record, 401, {"error": "invalid_grant"})
        record.user = user
        self._answer(record, 200, {"access_token": self.issuer.token(user, record.scopes), "expires_in": int(self.issuer.lifetime), "scope": " ".join(record.scopes)})

    def _record(self, method: str, query: str, scopes: list[str]) -> IssuerRequest:
        record = IssuerRequest(method, query, time.monotonic(), scopes=scopes)
        with self.issuer._lock:
            self.issuer.requests.append(record)
        return record

    def _answer(self, record: IssuerRequest, status: int, doc: dict) -> None:
        record.status = status
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
