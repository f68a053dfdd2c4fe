"""The example web app: counts visits in Redis; a worker records a heartbeat.

  app.py web     serve HTTP on $PORT: GET / answers "Hello from <hostname>! Visits: N"
  app.py worker  every second, bump worker:beats in Redis
  app.py check   the healthcheck: exit 0 when the web server answers
"""

import os
import socket
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

PORT = int(os.environ.get("PORT", "8000"))


def store():
    return redis.Redis(host=os.environ.get("REDIS_HOST", "redis"), port=6379, socket_timeout=2)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
        else:
            db = store()
            visits = db.incr("visits")
            beats = int(db.get("worker:beats") or 0)
            body = f"Hello from {socket.gethostname()}! Visits: {visits} (worker beats: {beats})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


def main(role):
    if role == "web":
        print(f"web: listening on :{PORT}", flush=True)
        ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
    elif role == "worker":
        db = store()
        print("worker: started", flush=True)
        while True:
            db.incr("worker:beats")
            time.sleep(1)
    elif role == "check":
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as answer:
            sys.exit(0 if answer.status == 200 else 1)
    else:
        sys.exit(f"usage: app.py web|worker|check (got {role!r})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "web")
