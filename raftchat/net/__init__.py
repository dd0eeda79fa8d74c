"""Networking: signaling server and client, WebRTC mesh. Bytes to and from peer ids."""
