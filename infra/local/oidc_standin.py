"""The OIDC issuer half of the local chat stand-in (served by chat_standin.py under /oidc).

It stands in for a CI system's identity token issuer, GitHub Actions' in shape:
- `GET /oidc/.well-known/openid-configuration`, the OpenID discovery document, naming the
  issuer `http://127.0.0.1:{port}/oidc` and its JWKS;
- `GET /oidc/keys`, the JWKS: the stand-in's own ES256 key plus the keys tests post to
  `POST /oidc/_keys` (`{"keys": [...], "replace": false}`), so tests sign tokens with keys
  they generate and the verifier finds them;
- `GET /oidc/token?audience=...`, GitHub's `ACTIONS_ID_TOKEN_REQUEST_URL`: with
  `Authorization: bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>` it answers `{"value": <JWT>}`, an
  ES256 token signed by the stand-in's key whose GitHub claims (`actor`, `repository`, `ref`,
  `workflow`, `environment`, ...) come from the URL's query, since here the URL stands for
  the job;
- `GET /oidc/_fetches`, how often the discovery document, the keys and tokens were asked for;
- `POST /oidc/_outage {"down": true}`: until `{"down": false}`, the discovery document, the keys
  and tokens answer 503, as an issuer that is out.
"""

import base64
import json
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# GitHub's claims, besides the query's, in a token the stand-in issues.
GITHUB_DEFAULTS = {
    "actor": "dev", "repository": "acme/payments", "repository_owner": "acme",
    "ref": "refs/heads/main", "ref_type": "branch", "event_name": "push",
    "workflow": "deploy", "job_workflow_ref": "acme/payments/.github/workflows/deploy.yml@refs/heads/main",
    "runner_environment": "github-hosted",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcState:
    def __init__(self, port: int, request_token: str):
        self.issuer = f"http://127.0.0.1:{port}/oidc"
        self.request_token = request_token
        self.lock = threading.Lock()
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.own_jwk = {"kty": "EC", "crv": "P-256", "kid": "standin-es256", "alg": "ES256", "use": "sig",
                        "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}
        self.keys = []
        self.fetches = {"discovery": 0, "keys": 0, "token": 0}
        self.down = False

    def sign(self, claims: dict) -> str:
        header = {"alg": "ES256", "typ": "JWT", "kid": self.own_jwk["kid"]}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def counted(oidc: OidcState, what: str) -> bool:
    """Counts a request for `what`; True when the issuer is out."""
    with oidc.lock:
        oidc.fetches[what] += 1
        return oidc.down


UNAVAILABLE = (503, {"message": "Service Unavailable (the stand-in's outage)"}, {})


def handle(oidc: OidcState, method: str, url: str, headers, raw: bytes):
    """Answers an OIDC request as (status, body, headers), or None when the path is not /oidc."""
    parsed = urllib.parse.urlparse(url)
    path = parsed.path
    if not path.startswith("/oidc/"):
        return None
    if method == "GET" and path == "/oidc/.well-known/openid-configuration":
        if counted(oidc, "discovery"):
            return UNAVAILABLE
        return 200, {"issuer": oidc.issuer, "jwks_uri": f"{oidc.issuer}/keys",
                     "subject_types_supported": ["public", "pairwise"],
                     "response_types_supported": ["id_token"],
                     "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository",
                                          "actor", "workflow", "environment", "job_workflow_ref"],
                     "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                     "scopes_supported": ["openid"]}, {}
    if method == "GET" and path == "/oidc/keys":
        if counted(oidc, "keys"):
            return UNAVAILABLE
        with oidc.lock:
            return 200, {"keys": [oidc.own_jwk] + list(oidc.keys)}, {}
    if method == "POST" and path == "/oidc/_keys":
        posted = json.loads(raw or b"{}")
        with oidc.lock:
            if posted.get("replace"):
                oidc.keys.clear()
            known = {k["kid"] for k in oidc.keys}
            oidc.keys.extend(k for k in posted.get("keys", []) if k["kid"] not in known)
            return 200, {"keys": len(oidc.keys), "fetches": dict(oidc.fetches)}, {}
    if method == "POST" and path == "/oidc/_outage":
        with oidc.lock:
            oidc.down = bool(json.loads(raw or b"{}").get("down"))
            return 200, {"down": oidc.down}, {}
    if method == "GET" and path == "/oidc/_fetches":
        with oidc.lock:
            return 200, dict(oidc.fetches), {}
    if method == "GET" and path == "/oidc/token":
        return token(oidc, parsed.query, headers)
    return 404, {"error": "not_found"}, {}


def token(oidc: OidcState, query: str, headers):
    """GitHub's token request: the bearer request token, then an ID token for `audience`."""
    if counted(oidc, "token"):
        return UNAVAILABLE
    if (headers.get("authorization") or "").lower() != f"bearer {oidc.request_token}".lower():
        return 401, {"message": "Bad credentials"}, {}
    asked = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    audience = asked.pop("audience", None) or "https://github.com/acme"
    asked.pop("api-version", None)
    claims = {**GITHUB_DEFAULTS, **asked}
    now = int(time.time())
    subject = f"repo:{claims['repository']}:ref:{claims['ref']}"
    if claims.get("environment"):
        subject = f"repo:{claims['repository']}:environment:{claims['environment']}"
    claims.update({"iss": oidc.issuer, "aud": audience, "sub": subject, "jti": f"standin-{now}-{id(claims)}",
                   "iat": now, "nbf": now - 5, "exp": now + 300})
    return 200, {"count": 1, "value": oidc.sign(claims)}, {}
