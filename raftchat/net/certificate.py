"""One DTLS certificate per process, shared by all of its peer connections.

aiortc 1.16 makes a fresh certificate for every ``RTCPeerConnection`` (an EC key,
a signature, and its fingerprints recomputed whenever asked). A node in a large
channel opens dozens of connections at once, and a newcomer's links all land on the
few voters: there, certificates were a good part of the cost of setting up a link.
Browsers share one certificate per origin in the same way. The DTLS fingerprints
still identify this process to its peers, and the channel handshake
(:mod:`raftchat.net.auth`) still binds both of them.

The certificate is replaced well before it expires (aiortc's are valid 30 days).
"""

from __future__ import annotations

import datetime
import logging

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint

logger = logging.getLogger(__name__)

RENEW_BEFORE_EXPIRY = datetime.timedelta(days=7)
"""A certificate this close to its expiry is replaced (links already open keep theirs)."""


class _SharedCertificate(RTCCertificate):
    """An aiortc certificate whose fingerprints are computed once."""

    _fingerprints: list[RTCDtlsFingerprint] | None = None

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return list(self._fingerprints)


_shared: _SharedCertificate | None = None


def shared_certificate(now: datetime.datetime | None = None) -> RTCCertificate:
    """This process's certificate, made on first use and renewed before it expires."""
    global _shared
    now = now or datetime.datetime.now(tz=datetime.UTC)
    if _shared is None or _shared.expires - now < RENEW_BEFORE_EXPIRY:
        _shared = _SharedCertificate.generateCertificate()
        logger.debug("new DTLS certificate, valid until %s", _shared.expires)
    return _shared


def new_peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """An ``RTCPeerConnection`` that uses the shared certificate instead of making one.

    aiortc asks ``RTCCertificate.generateCertificate`` for it in the constructor; that
    class method is swapped only for the duration of this synchronous call."""
    certificate = shared_certificate()
    original = RTCCertificate.__dict__["generateCertificate"]
    RTCCertificate.generateCertificate = classmethod(lambda cls: certificate)  # type: ignore[assignment,method-assign]
    try:
        return RTCPeerConnection(configuration)
    finally:
        RTCCertificate.generateCertificate = original  # type: ignore[method-assign]
