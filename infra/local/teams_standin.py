"""The Microsoft Teams half of the local chat stand-in (served by chat_standin.py).

It speaks what regate's bot uses, in the documented formats:
- the Entra token endpoint, `POST /{tenant}/oauth2/v2.0/token` (client credentials): a wrong
  app id, secret or scope gets 401 `invalid_client`; the multi-tenant `botframework.com`
  tenant gets 400 AADSTS700016, as Entra answers a single-tenant bot there;
- the Bot Framework OpenID metadata, `GET /v1/.well-known/openidconfiguration`, and its JWKS,
  `GET /v1/.well-known/keys`, serving the keys tests post to `POST /_keys` (`{"keys": [...],
  "replace": false}`: kid, kty, n, e, endorsements), so tests sign inbound tokens with keys
  they generate, rotate them, and endorse one for another channel only;
- the Bot Connector under `/amer/{tenant}/v3/conversations/...`: post an activity (201 with a
  13-digit id), reply to one (POST .../activities/{id}: ReplyToActivity), update it (PUT), and
  look a member up (users from policies/data.json, plus a
  person whose e-mail address differs from their UPN, a guest and an anonymous user). It
  demands a token it issued, and answers 413 `MessageSizeTooBig` above 100 KB (UTF-16).
`POST /_revoke {"token": fingerprint}` makes that token invalid. Faults use the stand-in's `/_fail` with a `method` of `teams.token`, `teams.send`,
`teams.reply`, `teams.create`, `teams.update` or `teams.member`: `status` 429 (with or without `retry_after`), 412, 5xx, or
403 (answered `MessageWritesBlocked`), 413. Every call is recorded (`GET /_calls`), with the
bearer token replaced by whether it was valid and a fingerprint (which token it was).
"""

import hashlib
import json
import threading
import urllib.parse

BOT_SCOPE = "https://api.botframework.com/.default"
ISSUER = "https://api.botframework.com"
MAX_ACTIVITY_UTF16 = 100 * 1024
# Accounts with something special about them, each named by its Teams id.
SPECIAL_MEMBERS = [
    # Known to the directory by a UPN that is an approver's address, with another mail address.
    {"id": "29:UPNDIFFERS", "email": "carol.owner@mail.example.com", "userPrincipalName": "carol@example.com"},
    {"id": "29:GUEST", "email": "ivan@example.com", "userPrincipalName": "ivan_example.com#EXT#@tenant.example",
     "userRole": "guest"},
    {"id": "29:ANONYMOUS", "userRole": "anonymous"},
]


def teams_id(email: str) -> str:
    return "29:" + hashlib.sha1(email.encode()).hexdigest()[:16]


def object_id(email: str) -> str:
    digest = hashlib.sha1(("aad:" + email).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


class TeamsState:
    def __init__(self, env: dict, emails: list, port: int):
        self.app_id = env["TEAMS_APP_ID"]
        self.tenant_id = env["TEAMS_TENANT_ID"]
        self.secret = env["TEAMS_CLIENT_SECRET"]
        self.port = port
        self.expires_in = int(env.get("TEAMS_STANDIN_TOKEN_SECONDS", "3600"))
        self.lock = threading.Lock()
        self.tokens = set()
        self.keys = []
        self.key_fetches = 0
        self.activities = {}
        self.replies = {}
        self.counter = 1_700_000_000_000
        members = [{"id": teams_id(e), "email": e, "userPrincipalName": e} for e in emails]
        self.members = []
        for member in members + SPECIAL_MEMBERS:
            email = member.get("email")
            self.members.append({
                "id": member["id"], "objectId": object_id(member["id"]),
                "name": (email or "anonymous").split("@")[0].title(),
                "givenName": (email or "anonymous").split("@")[0].title(), "surname": "",
                "email": email, "userPrincipalName": member.get("userPrincipalName"),
                "tenantId": self.tenant_id, "userRole": member.get("userRole", "user"),
            })

    def listing(self) -> list:
        return [{"id": m["id"], "aadObjectId": m["objectId"], "email": m["email"],
                 "userPrincipalName": m["userPrincipalName"], "userRole": m["userRole"]} for m in self.members]


def fault_answer(fault: dict):
    status = int(fault.get("status", 500))
    headers = {"retry-after": str(fault["retry_after"])} if "retry_after" in fault else {}
    codes = {403: "MessageWritesBlocked", 413: "MessageSizeTooBig", 429: "TooManyRequests",
             412: "PreconditionFailed"}
    code = codes.get(status, "ServiceError")
    return status, {"error": {"code": code, "message": f"injected {status}"}}, headers


def handle(stand_in, teams: TeamsState, method: str, path: str, headers, raw: bytes):
    """Answers a Teams request as (status, body, headers), or None when the path is not Teams'."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    if method == "GET" and path == "/v1/.well-known/openidconfiguration":
        return 200, {"issuer": ISSUER, "authorization_endpoint": "https://invalid.example/authorize",
                     "jwks_uri": f"http://127.0.0.1:{teams.port}/v1/.well-known/keys",
                     "id_token_signing_alg_values_supported": ["RS256"],
                     "token_endpoint_auth_methods_supported": ["private_key_jwt"]}, {}
    if method == "GET" and path == "/v1/.well-known/keys":
        with teams.lock:
            teams.key_fetches += 1
            return 200, {"keys": list(teams.keys)}, {}
    if method == "POST" and path == "/_keys":
        posted = json.loads(raw or b"{}")
        with teams.lock:
            if posted.get("replace"):
                teams.keys.clear()
            known = {k["kid"] for k in teams.keys}
            teams.keys.extend(k for k in posted.get("keys", []) if k["kid"] not in known)
            return 200, {"keys": len(teams.keys), "fetches": teams.key_fetches}, {}
    if method == "POST" and path == "/_revoke":
        # The token with this fingerprint (see the recorded calls) stops working, as a token
        # revoked before it expires does.
        fingerprint = json.loads(raw or b"{}").get("token", "")
        with teams.lock:
            revoked = {t for t in teams.tokens if hashlib.sha1(t.encode()).hexdigest()[:8] == fingerprint}
            teams.tokens -= revoked
            return 200, {"revoked": len(revoked)}, {}
    if method == "GET" and path == "/_teams":
        with teams.lock:
            return 200, {"app_id": teams.app_id, "tenant_id": teams.tenant_id, "members": teams.listing(),
                         "key_fetches": teams.key_fetches,
                         "activities": [{"conversation": c, "id": i, "activity": a}
                                        for (c, i), a in teams.activities.items()]}, {}
    if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
        return token(stand_in, teams, parts[0], raw)
    if len(parts) == 4 and parts[0] == "amer" and parts[2:] == ["v3", "conversations"] and method == "POST":
        return create_conversation(stand_in, teams, headers, raw)
    if len(parts) >= 5 and parts[0] == "amer" and parts[2] == "v3" and parts[3] == "conversations":
        return connector(stand_in, teams, method, parts[4:], headers, raw)
    return None


def token(stand_in, teams: TeamsState, tenant: str, raw: bytes):
    form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
    stand_in.record("teams.token", {"tenant": tenant, "client_id": form.get("client_id"),
                                    "scope": form.get("scope"), "grant_type": form.get("grant_type")})
    fault = stand_in.take_fault("teams.token", form)
    if fault:
        return fault_answer(fault)
    if tenant == "botframework.com":
        return 400, {"error": "unauthorized_client", "error_description":
                     f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found "
                     "in the directory 'Bot Framework'."}, {}
    good = (tenant == teams.tenant_id and form.get("grant_type") == "client_credentials"
            and form.get("client_id") == teams.app_id and form.get("client_secret") == teams.secret
            and form.get("scope") == BOT_SCOPE)
    if not good:
        return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}, {}
    with teams.lock:
        teams.counter += 1
        issued = f"teams-token-{teams.counter}"
        teams.tokens.add(issued)
    return 200, {"token_type": "Bearer", "expires_in": teams.expires_in, "ext_expires_in": teams.expires_in,
                 "access_token": issued}, {}


def create_conversation(stand_in, teams: TeamsState, headers, raw: bytes):
    """CreateConversation: a one-to-one conversation of the bot with one member, with its first
    activity posted; answers {id, activityId} (the same conversation id for the same member)."""
    bearer = (headers.get("authorization") or "").removeprefix("Bearer ")
    body = json.loads(raw or b"{}")
    with teams.lock:
        authorized = bearer in teams.tokens
    stand_in.record("teams.create", {"authorized": authorized, "token": hashlib.sha1(bearer.encode()).hexdigest()[:8],
                                     "conversation": None, "request": body})
    if not authorized:
        return 401, {"error": {"code": "Unauthorized", "message": "Authorization has been denied for this request."}}, {}
    fault = stand_in.take_fault("teams.create", body)
    if fault:
        return fault_answer(fault)
    members = body.get("members") or []
    known = {m["id"] for m in teams.members}
    if body.get("isGroup") or len(members) != 1 or members[0].get("id") not in known \
            or body.get("tenantId") != teams.tenant_id:
        return 400, {"error": {"code": "BadArgument", "message": "one member of this tenant, isGroup false"}}, {}
    conversation = "a:" + hashlib.sha1(members[0]["id"].encode()).hexdigest()[:24]
    activity_id = None
    with teams.lock:
        if body.get("activity"):
            teams.counter += 1
            activity_id = str(teams.counter)
            teams.activities[(conversation, activity_id)] = body["activity"]
    answer = {"id": conversation}
    if activity_id:
        answer["activityId"] = activity_id
    return 201, answer, {}


def connector(stand_in, teams: TeamsState, method: str, rest: list, headers, raw: bytes):
    bearer = (headers.get("authorization") or "").removeprefix("Bearer ")
    with teams.lock:
        authorized = bearer in teams.tokens
    conversation = rest[0]
    body = json.loads(raw) if raw else {}
    if method == "POST" and rest[1:] == ["activities"]:
        name = "teams.send"
    elif method == "PUT" and len(rest) == 3 and rest[1] == "activities":
        name = "teams.update"
    elif method == "POST" and len(rest) == 3 and rest[1] == "activities":
        name = "teams.reply"
    elif method == "GET" and len(rest) == 3 and rest[1] == "members":
        name = "teams.member"
    else:
        return 404, {"error": {"code": "NotFound", "message": "unknown connector path"}}, {}
    fingerprint = hashlib.sha1(bearer.encode()).hexdigest()[:8]
    stand_in.record(name, {"conversation": conversation, "path": "/".join(rest), "authorized": authorized,
                           "token": fingerprint, "activity": body or None})
    if not authorized:
        return 401, {"error": {"code": "Unauthorized", "message": "Authorization has been denied for this request."}}, {}
    fault = stand_in.take_fault(name, {"conversation": conversation, **body})
    if fault:
        return fault_answer(fault)
    if raw and len(raw.decode("utf-8").encode("utf-16-le")) // 2 > MAX_ACTIVITY_UTF16:
        return 413, {"error": {"code": "MessageSizeTooBig", "message": "Message size too large"}}, {}
    if name == "teams.send":
        with teams.lock:
            teams.counter += 1
            activity_id = str(teams.counter)
            teams.activities[(conversation, activity_id)] = body
        return 201, {"id": activity_id}, {}
    if name == "teams.reply":
        with teams.lock:
            if (conversation, rest[2]) not in teams.activities:
                return 404, {"error": {"code": "NotFound", "message": "The activity does not exist."}}, {}
            teams.counter += 1
            activity_id = str(teams.counter)
            teams.replies[(conversation, activity_id)] = {**body, "replyToId": rest[2]}
        return 201, {"id": activity_id}, {}
    if name == "teams.update":
        key = (conversation, rest[2])
        with teams.lock:
            if key not in teams.activities:
                return 404, {"error": {"code": "NotFound", "message": "The activity does not exist."}}, {}
            teams.activities[key] = body
        return 200, {"id": rest[2]}, {}
    for member in teams.members:
        if rest[2] in (member["id"], member["objectId"], member["userPrincipalName"]):
            return 200, member, {}
    return 404, {"error": {"code": "MemberNotFoundInConversation", "message": "The member was not found."}}, {}
