"""One DTLS certificate per process, shared by its peer connections."""

from __future__ import annotations

import datetime

from aiortc import RTCConfiguration
from aiortc.rtcdtlstransport import RTCCertificate

from raftchat.net.engines import aiortc_engine
from raftchat.net.engines.aiortc_engine import new_rtc_peer_connection, shared_certificate


def local_fingerprints(pc) -> list[str]:
    transport = pc._RTCPeerConnection__certificates[0]
    return [f.value for f in transport.getFingerprints()]


async def test_peer_connections_share_one_certificate() -> None:
    first = new_rtc_peer_connection(RTCConfiguration(iceServers=[]))
    second = new_rtc_peer_connection(RTCConfiguration(iceServers=[]))
    try:
        assert local_fingerprints(first) == local_fingerprints(second)
        assert local_fingerprints(first) == [
            f.value for f in RTCCertificate.getFingerprints(shared_certificate())
        ]
    finally:
        await first.close()
        await second.close()


async def test_aiortc_makes_its_own_certificates_again_afterwards() -> None:
    from aiortc import RTCPeerConnection

    shared = new_rtc_peer_connection(RTCConfiguration(iceServers=[]))
    plain = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        assert local_fingerprints(plain) != local_fingerprints(shared)
    finally:
        await shared.close()
        await plain.close()


def test_certificate_is_renewed_before_it_expires() -> None:
    current = shared_certificate()
    assert shared_certificate() is current
    soon = current.expires - aiortc_engine.RENEW_BEFORE_EXPIRY + datetime.timedelta(minutes=1)
    renewed = shared_certificate(now=soon)
    assert renewed is not current
    assert shared_certificate() is renewed
