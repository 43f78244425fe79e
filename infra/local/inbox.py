"""The local chat inbox (served by chat_standin.py at http://127.0.0.1:5010/): what regate posted
to the Slack and Teams stand-ins, and Approve and Reject buttons that send what Slack or Teams
would send to the callback.

- `GET /` is the page (inbox.html: plain HTML and a small script, no framework, no external
  asset);
- `GET /_inbox` is what the page shows: every Slack message (as it is now, with its thread and
  whether it was updated) and Teams card (likewise), the private answers each person got (Slack
  ephemeral messages and reason dialogs), and the people the page can click as;
- `POST /_inbox/click {"platform", "as", "action", "request_id", "channel", "ts"}` (Slack) or
  `{"platform", "as", "action", "request_id", "conversation", "activity_id", "reason"}` (Teams)
  sends the click: for Slack a `block_actions` payload signed with the local signing secret,
  for Teams an `adaptiveCard/action` invoke with a Bot Framework token signed by the stand-in's
  own key (published with the test keys the callback trusts). `POST /_inbox/reason {"as",
  "request_id", "reason"}` submits Slack's reason dialog. The answer says what the callback
  answered, and what only the clicker sees.
"""

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parents[2]
PAGE = Path(__file__).resolve().with_name("inbox.html")
RESOURCES = ROOT / ".local" / "run" / "resources.json"
# At most this many messages a platform: the newest.
SHOWN = 60
TEAM_ID = "T0REGATE"
APP_ID = "A0REGATE"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Inbox:
    def __init__(self, env: dict, people: list):
        self.signing_secret = env["SLACK_SIGNING_SECRET"].encode()
        self.app_id = env["TEAMS_APP_ID"]
        self.tenant_id = env["TEAMS_TENANT_ID"]
        self.service_url = env["TEAMS_SERVICE_URL"]
        self.people = people
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        # A key id of this key alone: a callback that cached the key of an earlier stand-in
        # under another id fetches this one (an unknown kid), never trusts the old one for it.
        self.kid = "regate-inbox-" + hashlib.sha256(str(numbers.n).encode()).hexdigest()[:16]
        self.jwk = {"kid": self.kid, "kty": "RSA", "use": "sig", "endorsements": ["msteams"],
                    "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(numbers.e.to_bytes(3, "big"))}

    def bearer(self) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": "https://api.botframework.com", "aud": self.app_id,
                  "serviceurl": self.service_url, "nbf": now - 60, "exp": now + 600}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return "Bearer " + signing_input + "." + b64url(signature)


def callback_urls() -> dict:
    resources = json.loads(RESOURCES.read_text())
    return {"slack": resources["slack_interactivity_url"], "teams": resources["teams_messaging_endpoint"]}


def post(url: str, body: bytes, headers: dict) -> dict:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return {"status": 502, "error": f"the callback did not answer: {error}"}
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError:
        value = text
    return {"status": status, "body": value}


def view(state, teams, inbox: Inbox, request_id: str = "") -> dict:
    """What the page shows: the newest messages, or only those about `request_id`."""
    with state.lock:
        messages = dict(state.messages)
        replies = dict(state.replies)
        calls = list(state.calls)
    with teams.lock:
        cards = dict(teams.activities)
        card_replies = dict(teams.replies)
    updated = {(c["body"].get("channel"), c["body"].get("ts")) for c in calls if c["method"] == "chat.update"}
    def about(item) -> bool:
        return not request_id or request_id in json.dumps(item)

    messages = {key: body for key, body in messages.items() if about(body)}
    cards = {key: activity for key, activity in cards.items() if about(activity)}
    slack = []
    for (channel, ts), body in sorted(messages.items(), key=lambda item: float(item[0][1]), reverse=True)[:SHOWN]:
        thread = [{"ts": rts, "text": r.get("text", "")} for (rc, rts), r in sorted(replies.items())
                  if rc == channel and r.get("thread_ts") == ts]
        slack.append({"channel": channel, "ts": ts, "text": body.get("text", ""), "blocks": body.get("blocks", []),
                      "updated": (channel, ts) in updated, "thread": thread})
    card_updates = {(c["body"].get("conversation"), c["body"].get("path", "").split("/")[-1])
                    for c in calls if c["method"] == "teams.update"}
    conversations = {c["body"].get("conversation") for c in calls if c["method"] == "teams.create"}
    team_cards = []
    for (conversation, activity_id), activity in sorted(cards.items(), key=lambda item: int(item[0][1]),
                                                          reverse=True)[:SHOWN]:
        attachments = activity.get("attachments") or [{}]
        thread = [{"id": rid, "card": (r.get("attachments") or [{}])[0].get("content")}
                  for (rc, rid), r in sorted(card_replies.items()) if rc == conversation and r.get("replyToId") == activity_id]
        team_cards.append({"conversation": conversation, "activity_id": activity_id,
                           "card": attachments[0].get("content"), "updated": (conversation, activity_id) in card_updates,
                           "direct": conversation.startswith("a:") or conversation in conversations, "thread": thread})
    private = []
    for call in calls:
        body = call["body"]
        if call["method"] == "chat.postEphemeral":
            private.append({"platform": "slack", "user": body.get("user"), "text": body.get("text", ""), "at": call["at"]})
        elif call["method"] == "views.open":
            view_body = body.get("view") or {}
            private.append({"platform": "slack", "user": body.get("trigger_id", "").split("|")[0],
                            "reason_for": view_body.get("private_metadata"), "at": call["at"],
                            "text": "Reject change: why are you rejecting it?"})
    return {"people": inbox.people, "slack": slack, "teams": team_cards, "private": private}


def slack_user(state, email: str):
    for user in state.users:
        if user["email"] == email and "deleted" not in user and "is_bot" not in user:
            return user
    return None


def click(state, teams, inbox: Inbox, body: dict) -> dict:
    person = next((p for p in inbox.people if p["id"] == body.get("as")), None)
    if person is None:
        return {"status": 400, "error": f"no person {body.get('as')!r} to click as"}
    action, request_id = body.get("action"), str(body.get("request_id", ""))
    if action not in ("approve", "reject") or not request_id:
        return {"status": 400, "error": "a click needs an action (approve or reject) and a request_id"}
    urls = callback_urls()
    if body.get("platform") == "slack":
        user_id = person["slack"]
        channel, ts = body.get("channel", ""), body.get("ts", "")
        payload = {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id, "team_id": person.get("slack_team", TEAM_ID)},
            "api_app_id": APP_ID, "team": {"id": TEAM_ID, "domain": "regate"},
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
            # The trigger names its clicker, so the page can show the reason dialog to them alone.
            "trigger_id": f"{user_id}|{ts}.trigger", "channel": {"id": channel, "name": "approvals"},
            "response_url": "https://hooks.slack.com/actions/T0REGATE/1/inbox",
            "actions": [{"action_id": action, "block_id": "decision", "type": "button", "value": request_id,
                         "action_ts": ts}],
        }
        return signed_slack(inbox, urls["slack"], payload)
    if body.get("platform") == "teams":
        member = person["teams"]
        conversation, activity_id = body.get("conversation", ""), body.get("activity_id", "")
        data = {"request_id": request_id}
        if body.get("reason"):
            data["reason"] = body["reason"]
        activity = {
            "type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
            "id": f"f:inbox-{time.time_ns()}", "serviceUrl": inbox.service_url,
            "from": {"id": member, "name": person["id"]}, "recipient": {"id": f"28:{inbox.app_id}"},
            "conversation": {"id": f"{conversation};messageid={activity_id}",
                             "conversationType": "personal" if conversation.startswith("a:") else "channel",
                             "tenantId": inbox.tenant_id},
            "channelData": {"tenant": {"id": inbox.tenant_id}}, "replyToId": activity_id,
            "value": {"action": {"type": "Action.Execute", "verb": f"regate.{action}", "data": data},
                      "trigger": "manual"},
        }
        with teams.lock:
            if not any(k.get("kid") == inbox.kid for k in teams.keys):
                teams.keys.append(dict(inbox.jwk))
        return post(urls["teams"], json.dumps(activity).encode(),
                    {"content-type": "application/json", "authorization": inbox.bearer()})
    return {"status": 400, "error": "platform must be slack or teams"}


def reason(inbox: Inbox, body: dict) -> dict:
    person = next((p for p in inbox.people if p["id"] == body.get("as")), None)
    if person is None or not body.get("request_id"):
        return {"status": 400, "error": "a reason needs a person and a request_id"}
    user_id = person["slack"]
    payload = {
        "type": "view_submission", "api_app_id": APP_ID, "team": {"id": TEAM_ID, "domain": "regate"},
        "user": {"id": user_id, "username": user_id, "team_id": person.get("slack_team", TEAM_ID)},
        "view": {"id": "V0INBOX", "callback_id": "reject_reason", "private_metadata": body["request_id"],
                 "state": {"values": {"reason": {"reason": {"type": "plain_text_input",
                                                             "value": body.get("reason", "")}}}}},
    }
    return signed_slack(inbox, callback_urls()["slack"], payload)


def signed_slack(inbox: Inbox, url: str, payload: dict) -> dict:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(inbox.signing_secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return post(url, body, {"content-type": "application/x-www-form-urlencoded",
                            "x-slack-request-timestamp": timestamp, "x-slack-signature": f"v0={digest}"})


def people(data: dict, slack_users: list, teams_members: list) -> list:
    """Who the page can click as: everyone policies/data.json names, a guest and a stranger."""
    emails = sorted({m.lower() for members in data.get("groups", {}).values() for m in members}
                    | {p.lower() for p in data.get("people", {})})
    by_email = {u["email"]: u for u in slack_users if "deleted" not in u and "is_bot" not in u
                and "is_restricted" not in u and u.get("team_id", TEAM_ID) == TEAM_ID}
    members = {m.get("email"): m["id"] for m in teams_members if m.get("email")}
    found = [{"id": e, "label": e, "slack": by_email[e]["id"], "teams": members.get(e)}
             for e in emails if e in by_email]
    found.append({"id": "guest", "label": "a guest (Slack: grace@example.com's guest account; Teams: ivan@example.com's)",
                  "slack": "U0GUEST", "teams": "29:GUEST"})
    found.append({"id": "stranger", "label": "a stranger (mallory@example.com)",
                  "slack": by_email.get("mallory@example.com", {}).get("id", "U0STRANGER"),
                  "teams": members.get("mallory@example.com")})
    return found
