"""IDLE_TIMEOUT_SECONDS: a silent socket is told and closed; an active one is not (§2, §4)."""

import time

import pytest

from conftest import start_server

IDLE = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory, "nexus-idle", IDLE_TIMEOUT_SECONDS=int(IDLE))
    yield s
    s.stop()


def test_idle_socket_gets_force_disconnect_active_one_stays(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    r = server.http("POST", "/messages", token=alice.token,
                    json={"receiverId": bob.id, "content": "hi"})
    assert r.status_code == 201
    silent = connect(alice, transport, label="silent")
    active = connect(bob, transport, label="active")

    # bob keeps talking (every 0.5 s) for longer than the idle timeout; alice says nothing.
    while time.monotonic() - active.ready_at < IDLE + 1.2:
        active.call("HEALTH_CHECK")
        time.sleep(0.5)

    assert silent.wait_for("FORCE_DISCONNECT") == {"reason": "idle_timeout"}
    [(told_at, _)] = silent.received_timed("FORCE_DISCONNECT")
    assert IDLE - 0.3 <= told_at - silent.ready_at <= IDLE + 1.5
    gone_at = silent.wait_disconnected(timeout=2)
    assert gone_at >= told_at  # told first, then disconnected
    assert not silent.sio.connected

    active.assert_none("FORCE_DISCONNECT")
    assert active.connected
    active.health()
    # Her conversation partner sees her go offline.
    active.wait_for("USER_PRESENCE_UPDATE",
                    lambda p: p["userId"] == alice.id and p["status"] == "offline")
