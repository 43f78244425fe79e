#!/usr/bin/env python3
"""Opens a page in headless Chromium over the Chrome DevTools protocol and reports on it, for
the tests: every console error and uncaught exception, what some JavaScript expressions give,
and a full-page screenshot.

    page_check.py URL --screenshot OUT.png [--eval NAME=EXPRESSION ...] [--width 1280]

Prints one JSON object: {"console_errors": [...], "values": {NAME: value}, "screenshot": OUT}.
Each expression runs in order after the page has loaded; one that gives a promise is awaited, so
a test can click and wait for what follows.
Exits 2 when Chromium cannot be started or the page does not load. Chromium runs with a fresh
profile and no background networking (this machine's network is closed), and is stopped at the
end, whatever happens.
"""
import argparse
import base64
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket  # websocket-client, pinned in infra/local/requirements.txt

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
START_SECONDS = 30
LOAD_SECONDS = 30


class Page:
    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=LOAD_SECONDS, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method: str, **params):
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(method)

    def wait_for(self, method: str):
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def console_errors(self):
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors


def start_chromium(profile: Path, width: int, height: int) -> subprocess.Popen:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "about:blank"]
    # Its own session, so stopping it stops its helper processes too (they write to the profile).
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def page_socket(profile: Path) -> str:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if active.exists() and active.read_text().strip():
            port = active.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise TimeoutError("Chromium did not open its DevTools port")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--eval", action="append", default=[], metavar="NAME=EXPRESSION")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"page_check: no Chromium at {CHROMIUM} (infra/local/setup.sh installs it)", file=sys.stderr)
        return 2
    # A helper process may still be writing the profile as it ends: its leftovers are no error.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = start_chromium(Path(profile), args.width, args.height)
        try:
            page = Page(page_socket(Path(profile)))
            for domain in ("Runtime", "Log", "Page"):
                page.call(f"{domain}.enable")
            page.call("Page.navigate", url=args.url)
            page.wait_for("Page.loadEventFired")
            values = {}
            for item in args.eval:
                name, expression = item.split("=", 1)
                # An expression may be a promise (an async step of a test): its value is awaited.
                result = page.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                   awaitPromise=True)
                values[name] = result.get("result", {}).get("value")
            shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(args.screenshot).write_bytes(base64.b64decode(shot["data"]))
            print(json.dumps({"console_errors": page.console_errors(), "values": values,
                              "screenshot": args.screenshot}))
            return 0
        except (OSError, TimeoutError, RuntimeError, websocket.WebSocketException) as error:
            print(f"page_check: {error}", file=sys.stderr)
            return 2
        finally:
            try:
                os.killpg(browser.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            browser.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
