"""Regenerate ``replay.pcap``, the capture the ``pcap-replay`` example replays.

Made with Scapy directly (not with ``engine.scenarios.pcap.write_pcap``), so reading it tests
the lab's reader against an independent writer. Deterministic: fixed addresses,
ports, sequence numbers and timestamps, so the bytes are the same on every run::

    python -m engine.examples.replay            # rewrites engine/examples/replay.pcap
"""

from __future__ import annotations

import sys
from pathlib import Path

#: (client, client port) of each connection, all to the example's vip 192.0.2.90:80.
CONNECTIONS = [("198.51.100.7", 40001), ("198.51.100.7", 40002),
               ("203.0.113.9", 51000), ("203.0.113.9", 51001)]
VIP, VPORT = "192.0.2.90", 80
REQUEST_BYTES, RESPONSE_BYTES = 120, 900


def replay_frames() -> list:
    """The capture's frames: per connection SYN, SYN-ACK, ACK, request, response, ACK,
    FIN-ACK, ACK (8 frames, 32 in all), Ethernet-framed, timestamped 1 ms apart."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    frames = []
    for client, port in CONNECTIONS:
        c2s = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=client, dst=VIP)
        s2c = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src=VIP, dst=client)
        cseq, sseq = 1000, 5000
        steps = [
            c2s / TCP(sport=port, dport=VPORT, flags="S", seq=cseq),
            s2c / TCP(sport=VPORT, dport=port, flags="SA", seq=sseq, ack=cseq + 1),
            c2s / TCP(sport=port, dport=VPORT, flags="A", seq=cseq + 1, ack=sseq + 1),
            c2s / TCP(sport=port, dport=VPORT, flags="PA", seq=cseq + 1, ack=sseq + 1)
            / Raw(b"G" * REQUEST_BYTES),
            s2c / TCP(sport=VPORT, dport=port, flags="PA", seq=sseq + 1,
                      ack=cseq + 1 + REQUEST_BYTES) / Raw(b"R" * RESPONSE_BYTES),
            c2s / TCP(sport=port, dport=VPORT, flags="A", seq=cseq + 1 + REQUEST_BYTES,
                      ack=sseq + 1 + RESPONSE_BYTES),
            c2s / TCP(sport=port, dport=VPORT, flags="FA", seq=cseq + 1 + REQUEST_BYTES,
                      ack=sseq + 1 + RESPONSE_BYTES),
            s2c / TCP(sport=VPORT, dport=port, flags="A", seq=sseq + 1 + RESPONSE_BYTES,
                      ack=cseq + 2 + REQUEST_BYTES),
        ]
        frames += steps
    for index, frame in enumerate(frames):
        frame.time = 1_700_000_000 + index / 1000
    return frames


def write_replay_pcap(path: str | Path) -> int:
    """Write the capture to ``path`` with Scapy's ``wrpcap``; returns the frame count."""
    from scapy.utils import wrpcap
    frames = replay_frames()
    wrpcap(str(path), frames)
    return len(frames)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("replay.pcap")
    print(f"wrote {write_replay_pcap(target)} frames to {target}")
