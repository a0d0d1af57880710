"""Server going away: a graceful stop tells every socket; an acknowledged message survives
``kill -9`` (FORCE_DISCONNECT, docs/protocol.md §2.2; durability, docs/design.md). Each test runs its own server."""

import signal

from conftest import TRANSPORTS, Peer, start_server


def test_graceful_shutdown_tells_every_socket(tmp_path_factory):
    server = start_server(tmp_path_factory, "nexus-shutdown")
    peers = []
    try:
        user = server.register()
        peers = [Peer(server, user, t, t).connect() for t in TRANSPORTS]
        server.proc.send_signal(signal.SIGTERM)
        for p in peers:
            assert p.wait_for("FORCE_DISCONNECT") == {"reason": "server_shutdown"}
            p.wait_disconnected(timeout=5)
        assert server.proc.wait(timeout=5) == 0
    finally:
        for p in peers:
            p.close()
        server.stop()


def test_acknowledged_messages_survive_kill_9(tmp_path_factory):
    server = start_server(tmp_path_factory, "nexus-durability",
                          RATE_LIMIT_MESSAGES_PER_MINUTE=100_000)
    a = None
    try:
        alice, bob = server.register("alice"), server.register("bob")
        a = Peer(server, alice, "websocket", "alice").connect()
        for i in range(500):
            a.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": f"m{i}", "tempId": f"d{i}"})
        a.wait_for("MESSAGE_SENT", count=20, timeout=10)
        server.proc.kill()  # SIGKILL: no goodbye, no flush
        server.proc.wait(timeout=5)
        acked = [p["dbMessageId"] for p in a.received("MESSAGE_SENT")]
    finally:
        if a is not None:
            a.close()
        server.stop()  # no-op after the kill; stops it if the test failed before

    assert 20 <= len(acked) < 500, "the kill should land mid-stream"
    restarted = start_server(tmp_path_factory, workdir=server.workdir,
                             RATE_LIMIT_MESSAGES_PER_MINUTE=100_000)
    try:
        stored = {m["id"] for m in restarted.conversation(alice, bob)}
        page = restarted.sync(alice, 0)
        while page["hasMore"]:
            stored |= {e["messageId"] for e in page["events"]}
            page = restarted.sync(alice, page["nextCursor"])
        stored |= {e["messageId"] for e in page["events"]}
        lost = [m for m in acked if m not in stored]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost"
    finally:
        restarted.stop()
