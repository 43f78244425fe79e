"""A fault-injecting proxy between the regate functions and moto, for the local stack's fault
tests. The functions' AWS_ENDPOINT_URL points here; every request goes on to moto unchanged,
unless a fault names its operation (the X-Amz-Target header, e.g.
"AWSStepFunctions.SendTaskSuccess", "DynamoDB_20120810.UpdateItem"; S3's REST calls are
"S3.GET", "S3.PUT", ..., matched against their path too):

  POST   /_faults {"operation": "...", "mode": "...", "times": 3, "match": ["text", "in the body"],
                   "delay_ms": 2000}
  GET    /_faults   the faults, how often each fired, and for "slow" ones the most calls they
                    held at once (max_in_flight: proof that callers ran in parallel)
  DELETE /_faults   clears them (?match=TEXT: only those whose match holds TEXT)

Modes: "watch" only forwards; "throttle" answers 400 ThrottlingException without forwarding; "error" answers 500
without forwarding; "slow" waits delay_ms, then forwards; "drop" forwards (so moto commits the
write) and then closes the connection without answering: a committed write whose answer was
lost, which the SDK retries.

Every fault that forwards a call tallies moto's answers by status ("answers": {"200": 1}) and
the time moto took ("upstream_ms"), so a "watch" proves, for instance, that exactly one
SendTaskSuccess was accepted.
"""

import argparse
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler

from burst_server import Server

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length", "host"}


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        # Requests each "slow" fault holds right now: how many calls overlap.
        self.in_flight = {}
        self.next_id = 0

    def take(self, operation: str, body: bytes):
        text = body.decode("utf-8", "replace")
        with self.lock:
            for fault in self.faults:
                if fault["operation"] != operation or fault["times"] <= 0:
                    continue
                wanted = fault.get("match") or []
                if any(part not in text for part in ([wanted] if isinstance(wanted, str) else wanted)):
                    continue
                fault["times"] -= 1
                fault["fired"] = fault.get("fired", 0) + 1
                return dict(fault)
        return None

    def tally(self, fault_id: int, status: int, seconds: float) -> None:
        with self.lock:
            for fault in self.faults:
                if fault["id"] == fault_id:
                    answers = fault.setdefault("answers", {})
                    answers[str(status)] = answers.get(str(status), 0) + 1
                    fault["upstream_ms"] = fault.get("upstream_ms", 0) + round(seconds * 1000)


def make_handler(upstream: str, faults: Faults):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def answer(self, status: int, body: bytes, headers=()):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def control(self, method: str, body: bytes):
            if method == "POST":
                fault = json.loads(body or b"{}")
                fault.setdefault("times", 1)
                with faults.lock:
                    faults.next_id += 1
                    fault["id"] = faults.next_id
                    faults.faults.append(fault)
            elif method == "DELETE":
                # DELETE /_faults?match=TEXT removes the faults whose match holds TEXT.
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                needle = (query.get("match") or [""])[0]
                with faults.lock:
                    faults.faults[:] = [f for f in faults.faults if needle not in json.dumps(f.get("match"))]
            with faults.lock:
                listing = json.dumps(faults.faults).encode()
            self.answer(200, listing, [("content-type", "application/json")])

        def forward(self, method: str, body: bytes):
            request = urllib.request.Request(upstream + self.path, data=body if method != "GET" else None,
                                             method=method)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    request.add_header(name, value)
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return response.status, response.read(), response.headers.items()
            except urllib.error.HTTPError as error:
                return error.code, error.read(), error.headers.items()

        def handle_any(self, method: str):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith("/_faults"):
                return self.control(method, body)
            # S3 speaks REST, without a target: its calls are "S3.GET", "S3.PUT", ..., and
            # their match texts are looked for in the path as well as the body.
            operation = self.headers.get("x-amz-target") or f"S3.{method}"
            matched = body if self.headers.get("x-amz-target") else self.path.encode() + b"\n" + body
            fault = faults.take(operation, matched)
            mode = fault["mode"] if fault else None
            if mode == "throttle":
                error = {"__type": "ThrottlingException", "message": "Rate exceeded (injected)"}
                return self.answer(400, json.dumps(error).encode(),
                                   [("content-type", "application/x-amz-json-1.0"),
                                    ("x-amzn-errortype", "ThrottlingException")])
            if mode == "error":
                error = {"__type": "InternalServerError", "message": "injected failure"}
                return self.answer(500, json.dumps(error).encode(),
                                   [("content-type", "application/x-amz-json-1.0")])
            if mode == "slow":
                with faults.lock:
                    live = faults.in_flight.get(fault["id"], 0) + 1
                    faults.in_flight[fault["id"]] = live
                    for f in faults.faults:
                        if f["id"] == fault["id"]:
                            f["max_in_flight"] = max(f.get("max_in_flight", 0), live)
                time.sleep(fault.get("delay_ms", 1000) / 1000)
                with faults.lock:
                    faults.in_flight[fault["id"]] -= 1
            started = time.monotonic()
            status, answer, headers = self.forward(method, body)
            if fault:
                faults.tally(fault["id"], status, time.monotonic() - started)
            if mode == "drop":
                self.close_connection = True
                return
            kept = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP]
            self.answer(status, answer, kept)

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_DELETE(self):
            self.handle_any("DELETE")

        def do_PUT(self):
            self.handle_any("PUT")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--upstream", default="http://127.0.0.1:5005")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), make_handler(args.upstream, Faults()))
    print(f"fault proxy on http://127.0.0.1:{args.port} -> {args.upstream}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
