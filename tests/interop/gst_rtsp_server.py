"""GStreamer RTSP server used as a real, independent peer by the interop tests.

Run with Debian's ``/usr/bin/python3`` (it needs ``gi``), not the project venv::

    /usr/bin/python3 tests/interop/gst_rtsp_server.py --media-dir ../shared/media --user u --password p

It binds three free ports and prints ``PORTS <open> <digest> <basic>`` on stdout once
serving, then runs until killed. Each client gets its own pipeline from the start of the
file (no re-encode):

- open port:   ``/h264`` (campus_576p10_h264.mp4), ``/h265`` (campus_576p25_h265.mp4),
  ``/h264-1080`` (campus_1080p25_h264.mp4, 4 Mbps: for benchmarks)
- open port:   ``/h264-aac`` and ``/h264-pcma``: the 576p10 H.264 clip with a test tone as a second
  track (AAC-hbr 16 kHz mono, RFC 3640; G.711 A-law 8 kHz, RFC 3551), as cameras with a microphone send it
- digest port: ``/secure`` (H.264, Digest auth)
- basic port:  ``/secure`` (H.264, Basic auth)
"""

from __future__ import annotations

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

# config-interval=-1: SPS/PPS(/VPS) in-band before every keyframe, as cameras send them.
H264_LAUNCH = (
    "( filesrc location={path} ! qtdemux ! h264parse config-interval=-1"
    " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
H265_LAUNCH = (
    "( filesrc location={path} ! qtdemux ! h265parse config-interval=-1"
    " ! rtph265pay name=pay0 pt=96 config-interval=-1 )"
)
# A 440 Hz tone on the same pipeline clock as the video, encoded as a camera's audio would be.
AUDIO_LAUNCH = {
    "aac": " audiotestsrc freq=440 ! audio/x-raw,rate=16000,channels=1 ! voaacenc ! rtpmp4gpay name=pay1 pt=97",
    "pcma": " audiotestsrc freq=440 ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8",
}


def _factory(launch: str, role: str | None = None) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)
    if role is None:
        return factory
    # Allow only the given role to see and construct this media.
    factory.add_role_from_structure(
        Gst.Structure.from_string(f"{role}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[
            0
        ]
    )
    return factory


def _token(role: str) -> GstRtspServer.RTSPToken:
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", role)
    return token


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--media-dir", required=True)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="secret")
    args = parser.parse_args()
    Gst.init(None)

    h264 = os.path.abspath(os.path.join(args.media_dir, "campus_576p10_h264.mp4"))
    h265 = os.path.abspath(os.path.join(args.media_dir, "campus_576p25_h265.mp4"))
    h264_1080 = os.path.abspath(os.path.join(args.media_dir, "campus_1080p25_h264.mp4"))

    # A GstRtspServer with auth challenges every mount, and its Python binding cannot combine
    # auth methods, so the open mounts and each auth method get a server (and port) of their own.
    open_server = _server(None, args.user, args.password)
    mounts = open_server.get_mount_points()
    mounts.add_factory("/h264", _factory(H264_LAUNCH.format(path=h264)))
    mounts.add_factory("/h265", _factory(H265_LAUNCH.format(path=h265)))
    mounts.add_factory("/h264-1080", _factory(H264_LAUNCH.format(path=h264_1080)))
    for name, audio in AUDIO_LAUNCH.items():
        launch = H264_LAUNCH.format(path=h264).removesuffix(" )") + audio + " )"
        mounts.add_factory(f"/h264-{name}", _factory(launch))
    digest_server = _server(GstRtsp.RTSPAuthMethod.DIGEST, args.user, args.password)
    digest_server.get_mount_points().add_factory("/secure", _factory(H264_LAUNCH.format(path=h264), "user"))
    basic_server = _server(GstRtsp.RTSPAuthMethod.BASIC, args.user, args.password)
    basic_server.get_mount_points().add_factory("/secure", _factory(H264_LAUNCH.format(path=h264), "user"))

    servers = (open_server, digest_server, basic_server)
    for server in servers:
        if server.attach(None) == 0:
            sys.exit("could not attach the RTSP server")
    print("PORTS " + " ".join(str(server.get_bound_port()) for server in servers), flush=True)
    GLib.MainLoop().run()


def _server(method: GstRtsp.RTSPAuthMethod | None, user: str, password: str) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    if method is None:
        return server
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(method)
    if method == GstRtsp.RTSPAuthMethod.DIGEST:
        auth.add_digest(user, password, _token("user"))
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), _token("user"))
    server.set_auth(auth)
    return server


if __name__ == "__main__":
    main()
