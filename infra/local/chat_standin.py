"""A local stand-in for the Slack Web API, Microsoft Teams (teams_standin.py) and a CI system's
OIDC token issuer (oidc_standin.py), for tests and
the demo.

It answers the methods regate uses in Slack's documented format (`ok`, `channel`, `ts`,
`error`, ...), checks the bot token (a wrong one gets `invalid_auth`), records every call
(`GET /_calls` -> [{method, body}]), and knows a fixed set of users built from
policies/data.json plus a few outsiders, and accounts that must never vote (deactivated, bot,
guests, a Slack Connect stranger: SPECIAL_ACCOUNTS) (`GET /_users`). Faults can be injected:
`POST /_fail {"method": "chat.update", "status": 429, "retry_after": 1, "times": 2,
"match": "C0SOMETHING"}` makes the next two chat.update calls whose body contains "C0SOMETHING"
answer 429 (`match` is optional; `status` 5xx answers an HTTP error, `error` an `ok: false`).
`GET /` is the local chat inbox (inbox.py): what regate posted, and buttons that click as anyone.
"""

import argparse
import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import inbox
import oidc_standin
import teams_standin
from burst_server import Server
from stack import read_env_file

ROOT = Path(__file__).resolve().parents[2]
OUTSIDERS = ["dev@example.com", "mallory@example.com", "eve@example.com"]
TEAM_ID = "T0REGATE"
# Accounts that must never vote, each with the address of an eligible approver: a deactivated
# account, a bot, a multi- and a single-channel guest, and a Slack Connect user from another
# organisation.
SPECIAL_ACCOUNTS = [
    {"id": "U0DEACTIVATED", "email": "erin@example.com", "deleted": True},
    {"id": "U0BOT", "email": "frank@example.com", "is_bot": True},
    {"id": "U0GUEST", "email": "grace@example.com", "is_restricted": True},
    {"id": "U0SINGLEGUEST", "email": "heidi@example.com", "is_restricted": True, "is_ultra_restricted": True},
    {"id": "U0STRANGER", "email": "alice@example.com", "team_id": "T0ELSEWHERE"},
]


def slack_id(email: str) -> str:
    return "U" + hashlib.sha1(email.encode()).hexdigest()[:10].upper()


def known_emails() -> list:
    data = json.loads((ROOT / "policies" / "data.json").read_text())
    emails = {m.lower() for members in data.get("groups", {}).values() for m in members}
    emails.update(OUTSIDERS)
    return sorted(emails)


def build_users() -> list:
    users = [{"id": slack_id(e), "name": e.split("@")[0], "email": e} for e in known_emails()]
    special = [{"name": a["id"].lower(), **a} for a in SPECIAL_ACCOUNTS]
    return users + special


class State:
    def __init__(self, token: str):
        self.token = token
        self.users = build_users()
        self.lock = threading.Lock()
        self.calls = []
        self.messages = {}
        self.replies = {}
        self.faults = []
        self.counter = 0

    def next_ts(self) -> str:
        with self.lock:
            self.counter += 1
            return f"{int(time.time())}.{self.counter:06d}"

    def record(self, method: str, body: dict) -> None:
        with self.lock:
            self.calls.append({"method": method, "body": body, "at": time.time()})

    def take_fault(self, method: str, body: dict):
        text = json.dumps(body)
        with self.lock:
            for fault in self.faults:
                if fault.get("match") and fault["match"] not in text:
                    continue
                if fault["method"] in (method, "*") and fault["times"] > 0:
                    fault["times"] -= 1
                    return fault
        return None


def user_json(user: dict) -> dict:
    return {"id": user["id"], "team_id": user.get("team_id", TEAM_ID), "name": user["name"],
            "real_name": user["name"].title(), "deleted": user.get("deleted", False),
            "is_bot": user.get("is_bot", False), "is_restricted": user.get("is_restricted", False),
            "is_ultra_restricted": user.get("is_ultra_restricted", False),
            "profile": {"email": user["email"], "real_name": user["name"].title()}}


def answer(state: State, method: str, body: dict) -> dict:
    if method == "chat.postMessage":
        channel = body.get("channel", "")
        if not channel or not channel[0] in "CGD":
            return {"ok": False, "error": "channel_not_found"}
        ts = state.next_ts()
        with state.lock:
            if body.get("thread_ts"):
                # A reply is in its parent's thread, not in the channel's history: Slack's
                # conversations.history "returns only parent messages".
                state.replies[(channel, ts)] = body
            else:
                state.messages[(channel, ts)] = body
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text", ""), "ts": ts}}
    if method == "chat.update":
        key = (body.get("channel", ""), body.get("ts", ""))
        with state.lock:
            if key not in state.messages:
                return {"ok": False, "error": "message_not_found"}
            state.messages[key] = body
        return {"ok": True, "channel": key[0], "ts": key[1], "text": body.get("text", "")}
    if method == "conversations.history":
        channel = body.get("channel", "")
        with state.lock:
            found = [(ts, message) for (c, ts), message in state.messages.items() if c == channel]
        found.sort(key=lambda item: item[0], reverse=True)
        with_metadata = str(body.get("include_all_metadata", "")).lower() == "true"
        messages = []
        for ts, message in found[: int(body.get("limit") or 100)]:
            entry = {"type": "message", "ts": ts, "text": message.get("text", "")}
            if with_metadata and message.get("metadata"):
                entry["metadata"] = message["metadata"]
            messages.append(entry)
        return {"ok": True, "messages": messages, "has_more": False}
    if method == "chat.postEphemeral":
        if not body.get("channel") or not body.get("user"):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "message_ts": state.next_ts()}
    if method == "users.info":
        for user in state.users:
            if user["id"] == body.get("user"):
                return {"ok": True, "user": user_json(user)}
        return {"ok": False, "error": "user_not_found"}
    if method == "users.lookupByEmail":
        for user in state.users:
            # Regular accounts come first, so an address finds its person, not a special account.
            if user["email"] == str(body.get("email", "")).lower():
                return {"ok": True, "user": user_json(user)}
        return {"ok": False, "error": "users_not_found"}
    if method == "conversations.open":
        # The direct message with one user: the same channel each time, as Slack answers.
        user = str(body.get("users", ""))
        if "," in user or not any(u["id"] == user for u in state.users):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + hashlib.sha1(user.encode()).hexdigest()[:10].upper()}}
    if method == "views.open":
        if not body.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        return {"ok": True, "view": {"id": "V" + state.next_ts().replace(".", ""), **(body.get("view") or {})}}
    return {"ok": False, "error": "unknown_method"}


def make_handler(state: State, teams: teams_standin.TeamsState, oidc: oidc_standin.OidcState,
                 local_inbox: inbox.Inbox):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def teams(self, method: str) -> bool:
            """Answers a Teams or OIDC request; False when the path is neither's."""
            path = urllib.parse.urlparse(self.path).path
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)) if method != "GET" else b""
            answered = oidc_standin.handle(oidc, method, self.path, self.headers, raw)
            if answered is None:
                answered = teams_standin.handle(state, teams, method, path, self.headers, raw)
            if answered is None:
                self.send_json(404, {"ok": False, "error": "not_found"})
                return True
            status, body, headers = answered
            self.send_json(status, body, headers)
            return True

        def do_PUT(self):
            self.teams("PUT")

        def send_json(self, status: int, value, headers=None) -> None:
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            for key, val in (headers or {}).items():
                self.send_header(key, val)
            self.end_headers()
            self.wfile.write(data)

        def read_body(self) -> dict:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            if "json" in (self.headers.get("content-type") or ""):
                return json.loads(raw or "{}")
            return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

        def send_page(self) -> None:
            data = inbox.PAGE.read_bytes()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = urllib.parse.urlparse(self.path).path
            if path in ("/", "/index.html"):
                return self.send_page()
            if path == "/_inbox":
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                request_id = (query.get("request") or [""])[0]
                return self.send_json(200, inbox.view(state, teams, local_inbox, request_id))
            if path == "/_health":
                return self.send_json(200, {"ok": True})
            if path == "/_calls":
                with state.lock:
                    return self.send_json(200, list(state.calls))
            if path == "/_users":
                return self.send_json(200, state.users)
            self.teams("GET")

        def do_POST(self):
            path = urllib.parse.urlparse(self.path).path
            if path == "/_reset":
                with state.lock:
                    state.calls.clear()
                    state.faults.clear()
                return self.send_json(200, {"ok": True})
            if path in ("/_inbox/click", "/_inbox/reason"):
                # JSON only: a form another site posts from the browser cannot click as anyone.
                if "application/json" not in (self.headers.get("content-type") or ""):
                    return self.send_json(415, {"error": "send JSON (content-type: application/json)"})
                try:
                    body = self.read_body()
                except (ValueError, json.JSONDecodeError):
                    return self.send_json(400, {"error": "the body is not JSON"})
                if path == "/_inbox/click":
                    return self.send_json(200, inbox.click(state, teams, local_inbox, body))
                return self.send_json(200, inbox.reason(local_inbox, body))
            if path == "/_fail":
                fault = self.read_body()
                fault.setdefault("times", 1)
                with state.lock:
                    state.faults.append(fault)
                return self.send_json(200, {"ok": True})
            if not path.startswith("/api/"):
                return self.teams("POST")
            method = path[len("/api/"):]
            try:
                body = self.read_body()
            except (ValueError, json.JSONDecodeError):
                return self.send_json(200, {"ok": False, "error": "invalid_json"})
            state.record(method, body)
            if self.headers.get("authorization") != f"Bearer {state.token}":
                return self.send_json(200, {"ok": False, "error": "invalid_auth"})
            fault = state.take_fault(method, body)
            if fault:
                if "error" in fault:
                    return self.send_json(200, {"ok": False, "error": fault["error"]})
                status = int(fault.get("status", 500))
                headers = {"retry-after": str(fault["retry_after"])} if "retry_after" in fault else {}
                answer_body = {"ok": False, "error": "ratelimited"} if status == 429 else {"ok": False, "error": "fatal_error"}
                return self.send_json(status, answer_body, headers)
            self.send_json(200, answer(state, method, body))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5010)
    args = parser.parse_args()
    env = read_env_file()
    teams = teams_standin.TeamsState(env, known_emails(), args.port)
    oidc = oidc_standin.OidcState(args.port, env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
    state = State(env["SLACK_BOT_TOKEN"])
    data = json.loads((ROOT / "policies" / "data.json").read_text())
    local_inbox = inbox.Inbox(env, inbox.people(data, state.users, teams.members))
    server = Server(("127.0.0.1", args.port), make_handler(state, teams, oidc, local_inbox))
    print(f"Slack and Teams stand-in listening on http://127.0.0.1:{args.port} (Slack under /api)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
