"""The wrtc engine's own parts (configuration, candidates, loopback, certificates), and
the two engines side by side: interop both ways, the same fingerprints, engine choice.

The mesh, link and handshake tests run on both engines too (``tests/test_mesh.py``,
``tests/test_link_recovery.py``, ``tests/test_auth.py``, through the ``webrtc`` fixture).
"""

from __future__ import annotations

import datetime

import pytest
from mesh_utils import (
    CLOSE_WAIT_S,
    FakeRelay,
    Peer,
    all_open,
    ids,
    make_peer,
    pending_tasks,
    private_config,
    signaled_host_addresses,
)
from support.waiting import wait_until

from raftchat.net import IceServer, MeshConfig
from raftchat.net.engines import (
    ENGINE_CHOICES,
    create_engine,
    resolve_engine,
    wrtc_problem,
)
from raftchat.net.engines.base import SelectedPair
from raftchat.net.guess_throttle import UNKNOWN_ADDRESS, remote_address

pytestmark = pytest.mark.skipif(
    wrtc_problem() is not None, reason=f"wrtc engine unavailable: {wrtc_problem()}"
)

if wrtc_problem() is None:
    import webrtc

    from raftchat.net.engines import wrtc_engine

OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
m=application 48556 UDP/DTLS/SCTP webrtc-datachannel\r
c=IN IP4 192.0.2.2\r
a=candidate:1 1 udp 2122194687 192.0.2.2 48556 typ host generation 0 network-id 1\r
a=candidate:2 1 udp 2122063615 127.0.0.1 51967 typ host generation 0 network-id 3\r
a=candidate:3 1 udp 2122265343 fd00::2 37282 typ host generation 0 network-id 2\r
a=candidate:4 1 udp 2122136831 ::1 33065 typ host generation 0 network-id 4\r
a=candidate:5 1 tcp 1518214911 192.0.2.2 9 typ host tcptype active generation 0\r
a=candidate:6 1 udp 1686052607 198.51.100.7 40000 typ srflx raddr 192.0.2.2 rport 48556\r
a=candidate:7 1 udp 41885439 203.0.113.9 50000 typ relay raddr 0.0.0.0 rport 0\r
a=ice-ufrag:To23\r
a=mid:0\r
a=end-of-candidates\r
"""


def candidate_addresses(sdp: str) -> list[tuple[str, str]]:
    """(address, type) of every candidate line."""
    return [
        (line.split()[4], line.split()[7])
        for line in sdp.splitlines()
        if line.startswith("a=candidate:")
    ]


# --- configuration and candidates -------------------------------------------------------


def test_configuration_has_only_the_configured_servers():
    assert wrtc_engine.build_rtc_configuration([], relay_only=False).ice_servers == []
    turn = IceServer("turn:127.0.0.1:3478", username="u", credential="p")
    config = wrtc_engine.build_rtc_configuration([turn], relay_only=True)
    assert [server.urls for server in config.ice_servers] == [["turn:127.0.0.1:3478"]]
    assert config.ice_transport_policy == "relay"
    # wrtc's own default is no server either (checked, since aiortc's is not).
    assert webrtc.RTCConfiguration().ice_servers == []


def test_only_the_configured_host_candidates_are_offered():
    loopback = wrtc_engine.filter_candidates(OFFER, ["127.0.0.1"])
    assert candidate_addresses(loopback) == [
        ("127.0.0.1", "host"),
        ("198.51.100.7", "srflx"),
        ("203.0.113.9", "relay"),
    ]
    # The default address names a candidate that is offered, not the one left out.
    assert "c=IN IP4 127.0.0.1\r\n" in loopback
    assert "m=application 51967 UDP/DTLS/SCTP webrtc-datachannel\r\n" in loopback
    assert "a=end-of-candidates" in loopback and "192.0.2.2 48556 typ host" not in loopback
    ipv6 = wrtc_engine.filter_candidates(OFFER, ["::1"])
    assert candidate_addresses(ipv6)[0] == ("::1", "host")
    assert "c=IN IP6 ::1\r\n" in ipv6


def test_without_host_addresses_every_candidate_but_loopback_is_offered():
    everything = wrtc_engine.filter_candidates(OFFER, None)
    hosts = [address for address, kind in candidate_addresses(everything) if kind == "host"]
    assert hosts == ["192.0.2.2", "fd00::2", "192.0.2.2"]
    assert "c=IN IP4 192.0.2.2\r\n" in everything


def test_loopback_is_allowed_only_before_the_first_connection(monkeypatch):
    calls = []
    monkeypatch.setattr(wrtc_engine.webrtc, "allow_loopback", lambda: calls.append(1))
    monkeypatch.setattr(wrtc_engine, "_loopback_allowed", None)
    wrtc_engine.prepare_for(["127.0.0.1"])
    wrtc_engine.prepare_for(["::1"])
    assert calls == [1]
    monkeypatch.setattr(wrtc_engine, "_loopback_allowed", None)
    wrtc_engine.prepare_for(None)  # the first connection needs no loopback...
    with pytest.raises(wrtc_engine.EngineError, match="before the first connection"):
        wrtc_engine.prepare_for(["127.0.0.1"])  # ...so a later one cannot have it


def test_loopback_refused_by_libwebrtc_is_an_engine_error(monkeypatch):
    def refuse() -> None:
        raise webrtc.InvalidStateError("a connection was created already")

    monkeypatch.setattr(wrtc_engine.webrtc, "allow_loopback", refuse)
    monkeypatch.setattr(wrtc_engine, "_loopback_allowed", None)
    with pytest.raises(wrtc_engine.EngineError, match="only be allowed before"):
        wrtc_engine.prepare_for(["127.0.0.1"])


async def test_one_certificate_serves_every_connection_and_is_renewed_before_expiry():
    first = await wrtc_engine.shared_certificate()
    assert await wrtc_engine.shared_certificate() is first
    assert len(wrtc_engine.certificate_fingerprint(first)) == 32
    expires = datetime.datetime.fromtimestamp(first.expires / 1000, tz=datetime.UTC)
    soon = expires - wrtc_engine.RENEW_BEFORE_EXPIRY + datetime.timedelta(minutes=1)
    renewed = await wrtc_engine.shared_certificate(now=soon)
    assert renewed is not first


def test_an_unknown_remote_address_is_one_shared_unit_of_the_guess_throttle():
    prflx = SelectedPair("host", ("127.0.0.1", 5000), "prflx", None)
    assert remote_address(prflx) == UNKNOWN_ADDRESS


# --- choosing an engine ----------------------------------------------------------------


def test_engine_choice():
    assert ENGINE_CHOICES == ("auto", "wrtc", "aiortc")
    assert create_engine("aiortc").name == "aiortc"
    assert create_engine("wrtc").name == "wrtc"
    assert resolve_engine("auto") in ("wrtc", "aiortc")
    with pytest.raises(ValueError, match="webrtc must be one of"):
        resolve_engine("chrome")
    with pytest.raises(ValueError, match="webrtc must be one of"):
        MeshConfig(webrtc="chrome")


def test_aiortc_tuning_goes_to_the_aiortc_engine_only():
    engine = create_engine("aiortc", udp_receive_buffer_bytes=1024, sctp_max_flight_bytes=0)
    assert engine.tuning.udp_receive_buffer_bytes == 1024  # type: ignore[attr-defined]
    assert engine.tuning.sctp_max_flight_bytes == 0  # type: ignore[attr-defined]
    assert not hasattr(create_engine("wrtc"), "tuning")


# --- both engines on one channel -------------------------------------------------------


@pytest.fixture
async def relay():
    relay = FakeRelay()
    yield relay
    for mesh in list(relay.meshes.values()):
        await mesh.close()
    await wait_until(lambda: not pending_tasks(), CLOSE_WAIT_S, "tasks to finish after close")


@pytest.mark.parametrize("offerer,answerer", [("wrtc", "aiortc"), ("aiortc", "wrtc")])
async def test_the_engines_interoperate_both_ways_in_a_private_channel(relay, offerer, answerer):
    config = private_config("interop passphrase")
    a = make_peer(relay, ids.a, config, webrtc=offerer)  # ids.a < ids.b: a offers
    b = make_peer(relay, ids.b, config, webrtc=answerer)
    await wait_until(lambda: all_open([a, b]), 10, "an authenticated link")
    assert (a.mesh.engine.name, b.mesh.engine.name) == (offerer, answerer)
    # Both read the same two certificates: what the handshake bound.
    a_local, a_remote = a.mesh._links[ids.b]._open_connection.dtls_fingerprints()
    b_local, b_remote = b.mesh._links[ids.a]._open_connection.dtls_fingerprints()
    assert (a_local, a_remote) == (b_remote, b_local) and a_local != a_remote
    for sender, receiver in ((a, b), (b, a)):
        big = bytes(range(256)) * 1024
        assert sender.mesh.send(receiver.peer_id, b"hello " + sender.mesh.engine.name.encode())
        assert sender.mesh.send(receiver.peer_id, big)
        await wait_until(lambda s=sender, r=receiver: len(r.received[s.peer_id]) == 2, 10)
        assert receiver.received[sender.peer_id][1] == big
    for peer in (a, b):
        assert signaled_host_addresses(peer) == {"127.0.0.1"}
        info = peer.mesh.links()[(ids.b if peer is a else ids.a)]
        assert info.authenticated and info.max_frame_bytes == config.max_frame_bytes
    await wait_until(lambda: a.mesh.links()[ids.b].rtt_ms is not None, 5, "an RTT")


async def test_wrtc_connections_get_an_explicit_empty_server_list(relay, monkeypatch):
    configurations = []

    class SpyPeerConnection(webrtc.RTCPeerConnection):
        def __init__(self, configuration=None):
            configurations.append(configuration)
            super().__init__(configuration)

    monkeypatch.setattr(wrtc_engine.webrtc, "RTCPeerConnection", SpyPeerConnection)
    peers: list[Peer] = [make_peer(relay, name, webrtc="wrtc") for name in (ids.a, ids.b)]
    await wait_until(lambda: all_open(peers), 10, "links")
    assert len(configurations) == 2
    for configuration in configurations:
        assert configuration is not None and configuration.ice_servers == []
    pc = peers[0].mesh._links[ids.b]._connection.pc
    assert pc.get_configuration().ice_servers == []
