"""Record a real RTSP session's bytes as test data (run by hand; the outputs are committed).

    PYTHONPATH=src python tests/interop/capture_session.py rtsp://127.0.0.1:PORT/h264 tests/protocols/data/gst_h264 1.2

Writes ``<prefix>.sdp`` (the DESCRIBE body), ``<prefix>_requests.bin`` (client → server) and
``<prefix>_session.bin`` (server → client: every response, then ``seconds`` of interleaved RTP/RTCP).
"""

from __future__ import annotations

import socket
import sys
import time

from vigil.protocols.rtsp.client import Playing, RtspClient, SessionFailed
from vigil.protocols.rtsp.message import InterleavedFrame, RtspParser, RtspResponse


def main() -> None:
    url, prefix, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = RtspClient(url)
    sock = socket.create_connection((client.host, client.port), timeout=5)
    sent = bytearray()
    received = bytearray()
    sdp = b""
    client.start(time.monotonic())
    playing_at: float | None = None
    watcher = RtspParser()  # sees the same bytes, to pick out the DESCRIBE body
    while playing_at is None or time.monotonic() - playing_at < seconds:
        out = client.data_to_send()
        if out:
            sent += out
            sock.sendall(out)
        data = sock.recv(65536)
        if not data:
            raise SystemExit("server closed the connection")
        received += data
        client.receive_data(data, time.monotonic())
        watcher.feed(data)
        while (message := watcher.next_event()) is not None:
            if isinstance(message, RtspResponse) and message.headers.get("Content-Type") == "application/sdp":
                sdp = message.body
        while (event := client.next_event()) is not None:
            if isinstance(event, Playing):
                playing_at = time.monotonic()
            elif isinstance(event, SessionFailed):
                raise SystemExit(f"session failed: {event}")
            elif isinstance(event, InterleavedFrame):
                pass
    sock.close()
    # Cut at a frame boundary so the capture parses to the end.
    parser = RtspParser()
    parser.feed(bytes(received))
    while parser.next_event() is not None:
        pass
    complete = len(received) - parser.buffered
    with open(f"{prefix}.sdp", "wb") as f:
        f.write(sdp)
    with open(f"{prefix}_requests.bin", "wb") as f:
        f.write(sent)
    with open(f"{prefix}_session.bin", "wb") as f:
        f.write(received[:complete])


if __name__ == "__main__":
    main()
