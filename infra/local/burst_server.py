"""The HTTP server the local stand-ins run on (the Slack and Teams stand-in, the fault proxy)."""

from http.server import ThreadingHTTPServer


class Server(ThreadingHTTPServer):
    """Threaded, with a listen backlog that holds a burst: the default of 5 drops connections
    when dozens of clicks arrive at once, and a client waits 1 s to retry a dropped SYN."""

    request_queue_size = 128
