"""Harness for the python-socketio suite of the Nexus Socket.IO gateway.

Starts the real ``nexus`` binary (``NEXUS_BIN``, default ``target/debug/nexus``) on a free
port with its own SQLite file, once per test module (a module that needs special settings
overrides the ``server`` fixture, see ``start_server``). Users are registered over HTTP and
talk to the gateway through the official python-socketio client, over the WebSocket and the
HTTP long-polling transports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import engineio
import engineio.payload
import pytest
import requests
import socketio

ROOT = Path(__file__).resolve().parents[2]
NEXUS_BIN = os.environ.get("NEXUS_BIN", str(ROOT / "target" / "debug" / "nexus"))
NAMESPACE = "/ws"
TRANSPORTS = ["websocket", "polling"]
# A known secret (>= 32 bytes) so tests can mint expired / self-signed tokens.
JWT_SECRET = "nexus-python-suite-secret-0123456789abcdef"
DEFAULT_TIMEOUT = 3.0
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# python-engineio refuses a long-polling response carrying more than 16 packets and drops the
# connection ("Unexpected packet from server, aborting"). The Engine.IO protocol sets no such
# limit (socket.io-client has none), and a busy socket legitimately gets larger batches, so the
# client is told to accept them: this suite tests the server, not that client-side cap.
engineio.payload.Payload.max_decode_packets = 4096


class _InOrderEngineIO(engineio.Client):
    """python-engineio runs the handler of every received packet on a new thread, so handlers
    (and the event log below) would see events in a scheduling-dependent order. Dispatching
    on the read-loop thread keeps the order in which the server's packets arrived, as a
    browser client sees them. (Handlers here only record; they never block.)"""

    def _trigger_event(self, event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return _InOrderEngineIO

    def disconnect(self):
        """python-engineio race on long-polling: ``disconnect()`` queues the namespace
        DISCONNECT and the Engine.IO CLOSE, but the write loop stops as soon as the state
        leaves "connected"; if it is busy POSTing an earlier packet (a PONG, the namespace
        goodbye), CLOSE is never sent and ``disconnect()`` then blocks on the pending long-poll
        GET until the server's next ping (25 s). So: queue the goodbye, let the write loop send
        everything queued, then close the Engine.IO session."""
        eio = self.eio
        if eio.current_transport != "polling" or eio.state != "connected":
            return super().disconnect()
        for ns in list(self.namespaces):
            self._send_packet(self.packet_class(socketio.packet.DISCONNECT, namespace=ns))
        drained = threading.Thread(target=eio.queue.join, daemon=True)
        drained.start()
        drained.join(timeout=2)
        eio.disconnect()


# Server settings that must not leak in from the caller's environment.
_CONFIG_VARS = {
    "PORT", "HOST", "DATABASE_URL", "REDIS_URL", "JWT_SECRET", "JWT_EXPIRES_IN_SECONDS",
    "RATE_LIMIT_MESSAGES_PER_MINUTE", "IDLE_TIMEOUT_SECONDS", "FRONTEND_URL", "LOG_FORMAT",
    "DATABASE_MAX_CONNECTIONS", "RUST_LOG", "RATE_LIMIT_CHANGES_PER_MINUTE",
    "MAX_SOCKETS_PER_USER", "MAX_CONNECTIONS", "RATE_LIMIT_AUTH_PER_IP_PER_MINUTE",
    "TRUST_X_FORWARDED_FOR",
}


# --------------------------------------------------------------------------------------------
# small helpers


def other(transport: str) -> str:
    return "polling" if transport == "websocket" else "websocket"


def is_iso_ms(value) -> bool:
    return isinstance(value, str) and bool(ISO_MS.match(value))


def iso_to_epoch(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def is_uuid(value) -> bool:
    return isinstance(value, str) and bool(UUID_RE.match(value))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_jwt(claims: dict, secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    """An HS256 (or unsigned, alg "none") JWT with the given claims."""
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    if alg == "none":
        return f"{header}.{payload}."
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


def wait_until(condition, timeout=DEFAULT_TIMEOUT, interval=0.02, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def _die_with_parent():  # runs in the child before exec
    """Linux: the server gets SIGTERM if the test process dies without tearing down."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# the server


@dataclass
class User:
    id: str
    name: str
    email: str
    token: str


class Server:
    def __init__(self, base: str, proc: subprocess.Popen, log_path: Path):
        self.base = base
        self.proc = proc
        self.log_path = log_path
        self.workdir = log_path.parent

    # HTTP -------------------------------------------------------------------------------
    def http(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base + path, headers=headers, timeout=5, **kw)

    def register(self, name: str | None = None) -> User:
        name = name or f"user-{uuid.uuid4().hex[:6]}"
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.org"
        r = self.http("POST", "/auth/register",
                      json={"name": name, "email": email, "password": "correct horse battery"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["user"]["email"] == email
        return User(id=body["user"]["id"], name=name, email=email, token=body["accessToken"])

    def conversation(self, me: User, other_user: User) -> list[dict]:
        r = self.http("GET", f"/messages/conversation/{other_user.id}?limit=200", token=me.token)
        assert r.status_code == 200, r.text
        return r.json()["messages"]

    def sync(self, me: User, since: int = 0) -> dict:
        r = self.http("GET", f"/sync?since={since}", token=me.token)
        assert r.status_code == 200, r.text
        return r.json()

    def cursor(self, me: User) -> int:
        """The user's current position in their change feed."""
        page = self.sync(me, 0)
        while page["hasMore"]:
            page = self.sync(me, page["nextCursor"])
        return page["nextCursor"]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_server(tmp_path_factory, name: str = "nexus", workdir: Path | None = None,
                 **extra_env) -> Server:
    """Starts nexus with its own database (or the one in ``workdir``, to restart a server);
    ``extra_env`` adds settings."""
    if not os.access(NEXUS_BIN, os.X_OK):
        pytest.exit(f"nexus binary not found at {NEXUS_BIN} (set NEXUS_BIN)", returncode=2)
    last_error = ""
    given = workdir
    for _attempt in range(3):
        workdir = given or tmp_path_factory.mktemp(name)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in _CONFIG_VARS}
        env.update(
            DATABASE_URL=f"sqlite://{workdir / 'nexus.db'}",
            HOST="127.0.0.1",
            PORT=str(port),
            RUST_LOG="warn",
            JWT_SECRET=JWT_SECRET,
            # every test user registers from 127.0.0.1
            RATE_LIMIT_AUTH_PER_IP_PER_MINUTE="100000",
        )
        env.update({k: str(v) for k, v in extra_env.items()})
        log_path = workdir / "server.log"
        log = open(log_path, "ab")
        # cwd is the scratch directory, so no stray .env file is picked up.
        proc = subprocess.Popen([NEXUS_BIN], cwd=workdir, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
        log.close()
        server = Server(f"http://127.0.0.1:{port}", proc, log_path)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(server.base + "/ready", timeout=1).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            time.sleep(0.05)
        last_error = server.log()
        server.stop()  # exited (port taken?) or never became ready: try another port
    raise RuntimeError(f"nexus did not become ready:\n{last_error}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A nexus with default settings, one per test module."""
    s = start_server(tmp_path_factory)
    yield s
    s.stop()


# --------------------------------------------------------------------------------------------
# Socket.IO peers

_NO_DATA = object()


class Peer:
    """One python-socketio client on ``/ws`` that records every event it receives."""

    def __init__(self, server: Server, user: User | None, transport: str, label: str = ""):
        self.server = server
        self.user = user
        self.transport = transport
        self.label = label or (user.name if user else "anonymous")
        debug = bool(os.environ.get("NEXUS_TEST_DEBUG"))
        self.sio = InOrderClient(reconnection=False, logger=debug, engineio_logger=debug)
        self._cond = threading.Condition()
        self._events: list[tuple[float, str, object]] = []
        self.connect_errors: list[object] = []
        self.disconnected_at: float | None = None
        self.sio.on("*", self._on_any, namespace=NAMESPACE)
        self.sio.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)

    # handlers (run on the client's threads)
    def _record(self, event, payload):
        with self._cond:
            self._events.append((time.monotonic(), event, payload))
            self._cond.notify_all()

    def _on_any(self, event, *args):
        payload = args[0] if len(args) == 1 else (args or None)
        self._record(event, payload)

    def _on_connect_error(self, data=None):
        with self._cond:
            self.connect_errors.append(data)
            self._cond.notify_all()

    def _on_disconnect(self, *_reason):
        with self._cond:
            self.disconnected_at = time.monotonic()
            self._cond.notify_all()

    # connection
    def connect(self, token: str | None = _NO_DATA, headers: dict | None = None,
                wait_success: bool = True) -> "Peer":
        if token is _NO_DATA:
            token = self.user.token
        auth = {"token": token} if token is not None else None
        self.connected_at = time.monotonic()
        self.sio.connect(self.server.base, namespaces=[NAMESPACE], transports=[self.transport],
                         auth=auth, headers=headers or {}, socketio_path="socket.io",
                         wait_timeout=5)
        if wait_success:
            # The server joins the user's room before it says CONNECTION_SUCCESS.
            self.wait_for("CONNECTION_SUCCESS")
            self.ready_at = time.monotonic()
        return self

    @property
    def connected(self) -> bool:
        return self.sio.connected and self.disconnected_at is None

    @property
    def sid(self) -> str:
        return self.sio.get_sid(NAMESPACE)

    def close(self):
        """Disconnects (the server runs its disconnect handling at once)."""
        try:
            self.sio.disconnect()
        except Exception:  # already gone
            pass
        if self.disconnected_at is None:
            with self._cond:
                self.disconnected_at = time.monotonic()

    # sending
    def emit(self, event: str, data=_NO_DATA):
        if data is _NO_DATA:
            self.sio.emit(event, namespace=NAMESPACE)
        else:
            self.sio.emit(event, data, namespace=NAMESPACE)

    def call(self, event: str, data=_NO_DATA, timeout: float = DEFAULT_TIMEOUT):
        """Emits with an acknowledgement callback and returns what the server acknowledged."""
        if data is _NO_DATA:
            return self.sio.call(event, namespace=NAMESPACE, timeout=timeout)
        return self.sio.call(event, data, namespace=NAMESPACE, timeout=timeout)

    def send(self, receiver: User, content: str, temp_id: str | None = None) -> dict:
        data = {"receiverId": receiver.id, "content": content}
        if temp_id is not None:
            data["tempId"] = temp_id
        ack = self.call("NEW_MESSAGE", data)
        assert "dbMessageId" in ack, f"send refused: {ack}"
        return ack

    def health(self) -> dict:
        """Round trip proving the socket is still connected and served."""
        answer = self.call("HEALTH_CHECK")
        assert answer["status"] == "ok", answer
        return answer

    # receiving
    def mark(self) -> int:
        with self._cond:
            return len(self._events)

    def received(self, event: str | None = None, pred=None, after: int = 0) -> list:
        with self._cond:
            events = self._events[after:]
        return [p for (_t, e, p) in events
                if (event is None or e == event) and (pred is None or pred(p))]

    def received_timed(self, event: str, pred=None, after: int = 0) -> list[tuple[float, object]]:
        with self._cond:
            events = self._events[after:]
        return [(t, p) for (t, e, p) in events if e == event and (pred is None or pred(p))]

    def names(self, after: int = 0) -> list[str]:
        with self._cond:
            return [e for (_t, e, _p) in self._events[after:]]

    def wait_for(self, event: str, pred=None, timeout: float = DEFAULT_TIMEOUT, after: int = 0,
                 count: int = 1):
        """The first payload of ``event`` (matching ``pred``, received after mark ``after``);
        with ``count`` > 1 waits for that many and returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [p for (_t, e, p) in self._events[after:]
                         if e == event and (pred is None or pred(p))]
                if len(found) >= count:
                    return found[0] if count == 1 else found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e, p) for (_t, e, p) in self._events[after:]][-10:]
                    raise AssertionError(
                        f"[{self.label}/{self.transport}] no {count}x {event} within {timeout}s; "
                        f"got {len(found)}; last events: {seen}")
                self._cond.wait(left)

    def wait_disconnected(self, timeout: float = DEFAULT_TIMEOUT) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.disconnected_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"[{self.label}] still connected after {timeout}s")
                self._cond.wait(left)
            return self.disconnected_at

    def assert_none(self, event: str, pred=None, after: int = 0, within: float = 0.0):
        """No ``event`` (matching ``pred``) after mark ``after``, watching for ``within`` s."""
        if within:
            time.sleep(within)
        got = self.received(event, pred, after)
        assert not got, f"[{self.label}/{self.transport}] unexpected {event}: {got}"


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param


@pytest.fixture
def connect(server):
    """``connect(user, transport, **kw)`` -> a connected Peer, closed after the test."""
    peers: list[Peer] = []

    def _connect(user: User | None, transport: str, label: str = "", **kw) -> Peer:
        peer = Peer(server, user, transport, label)
        peers.append(peer)
        return peer.connect(**kw)

    yield _connect
    for p in peers:
        p.close()


@pytest.fixture
def peer_factory(server):
    """``peer_factory(user, transport)`` -> an unconnected Peer, closed after the test."""
    peers: list[Peer] = []

    def _make(user: User | None, transport: str, label: str = "") -> Peer:
        peer = Peer(server, user, transport, label)
        peers.append(peer)
        return peer

    yield _make
    for p in peers:
        p.close()
