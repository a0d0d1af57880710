"""/metrics against a server of its own: exact values (docs/operations.md, "Metrics")."""

import re

import pytest

from conftest import Peer, start_server, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory, "metrics")
    yield s
    s.stop()


def scrape(server) -> str:
    r = server.http("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    return r.text


def value(text: str, series: str) -> float:
    """The sample of ``series`` (name and labels as exposed); 0 when absent."""
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_sockets_events_and_sends_are_counted_exactly(server):
    ada, bob = server.register("ada"), server.register("bob")
    a1 = Peer(server, ada, "websocket", "a1").connect()
    a2 = Peer(server, ada, "polling", "a2").connect()
    b = Peer(server, bob, "websocket", "b").connect()
    try:
        wait_until(lambda: value(scrape(server), "nexus_sockets_connected") == 3,
                   message="3 sockets connected")
        a2.close()
        wait_until(lambda: value(scrape(server), "nexus_sockets_connected") == 2,
                   message="2 sockets after one closed")

        a1.send(bob, "hello", temp_id="t1")
        a1.send(bob, "hello", temp_id="t1")  # a retry: acknowledged, not stored again
        b.wait_for("NEW_MESSAGE")
        text = scrape(server)
        assert value(text, 'nexus_socket_events_received_total{event="NEW_MESSAGE"}') == 2
        assert value(text, 'nexus_socket_events_sent_total{event="MESSAGE_SENT"}') == 2
        assert value(text, "nexus_messages_stored_total") == 1
        assert value(text, 'nexus_send_duration_seconds_count{transport="socket"}') == 2

        a1.call("MADE_UP_EVENT", {})
        text = scrape(server)
        assert value(text, 'nexus_socket_events_received_total{event="other"}') == 1
        assert "MADE_UP_EVENT" not in text
    finally:
        for p in (a1, a2, b):
            p.close()
    wait_until(lambda: value(scrape(server), "nexus_sockets_connected") == 0,
               message="no socket left")
