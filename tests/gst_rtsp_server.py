"""A real H.264 RTSP server for the tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0), run as a subprocess of the system Python, which has PyGObject.

Each client session gets its own media (not shared), so every session starts at frame 0 of
tests/frame_pattern.py: ``appsrc`` (BGR, numbered frames at ``--fps``) ! videoconvert ! x264enc
(tune=zerolatency) ! rtph264pay.  With ``DFSEG_TEST_RTSP_USER`` and ``DFSEG_TEST_RTSP_PASSWORD`` in
the environment (never on the command line, which ``ps`` and logs show) the server asks for them,
by HTTP Basic or, with ``--auth digest``, Digest authentication.  It listens on 127.0.0.1 at
``--port`` (0: a free one) and prints its URL, without credentials, on stdout once it accepts
clients; SIGTERM or SIGINT stops it.

    /usr/bin/python3 tests/gst_rtsp_server.py --check    # exit 0 when everything it needs is here

The test side uses ``H264RtspServer``, which starts, kills and restarts that process:

    with H264RtspServer(log_path, user="admin", password="pw") as server:
        server.url                   # rtsp://127.0.0.1:PORT/stream
        server.kill(); server.start(server.port)   # a crash, then the same server again
"""

import argparse
import os
import selectors
import signal
import subprocess
import sys
import time
from typing import Optional

from frame_pattern import pattern_bgr

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-gi lives there, not in the project's venv
USER_VARIABLE = "DFSEG_TEST_RTSP_USER"
PASSWORD_VARIABLE = "DFSEG_TEST_RTSP_PASSWORD"
ELEMENTS = ("appsrc", "videoconvert", "x264enc", "rtph264pay", "rtpbin", "udpsink")
PATH = "/stream"
INSTALL_HINT = "make test installs Debian's gir1.2-gst-rtsp-server-1.0 and GStreamer plugins (root, apt-get)"


# ---------------------------------------------------------------------------------------- the test side


def missing() -> Optional[str]:
    """Why the server cannot run here (a one-line reason), or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return "no {}".format(SYSTEM_PYTHON)
    try:
        check = subprocess.run([SYSTEM_PYTHON, __file__, "--check"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "{} --check did not answer in 120 s".format(__file__)
    return None if check.returncode == 0 else check.stdout.strip().splitlines()[-1]


class H264RtspServer:
    """The server as a subprocess; ``start`` waits for its URL, ``kill`` ends it at once (SIGKILL)."""

    def __init__(self, log_path: str, user: Optional[str] = None, password: Optional[str] = None,
                 auth: str = "basic", width: int = 192, height: int = 96, fps: float = 25.0) -> None:
        self.log_path = log_path  # the servers' stderr, appended across restarts
        self.user, self.password, self.auth = user, password, auth
        self.width, self.height, self.fps = width, height, fps
        self.process = None  # type: Optional[subprocess.Popen]
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        return "rtsp://127.0.0.1:{}{}".format(self.port, PATH)

    def url_with(self, user: str, password: str) -> str:
        return self.url.replace("rtsp://", "rtsp://{}:{}@".format(user, password))

    def start(self, port: int = 0, timeout: float = 120.0) -> "H264RtspServer":
        env = dict(os.environ)
        env.pop(USER_VARIABLE, None)
        env.pop(PASSWORD_VARIABLE, None)
        if self.user is not None:
            env[USER_VARIABLE], env[PASSWORD_VARIABLE] = self.user, self.password or ""
        command = [SYSTEM_PYTHON, __file__, "--port", str(port), "--auth", self.auth, "--width", str(self.width),
                   "--height", str(self.height), "--fps", str(self.fps)]
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env,
                                            text=True)
        self.starts += 1
        line = self._first_line(timeout)
        if not line.startswith("rtsp://"):
            self.kill()
            with open(self.log_path) as log:
                raise RuntimeError("the GStreamer RTSP server did not start: {!r}; its log:\n{}".format(line, log.read()))
        self.port = int(line.split(":")[2].split("/")[0])
        return self

    def _first_line(self, timeout: float) -> str:
        """The server's first line of output, or '' when it ends or stays silent for ``timeout``."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return ""
        return self.process.stdout.readline().strip()

    def kill(self) -> None:
        """SIGKILL, as a crash: connections drop, the port closes."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=60)
            self.process.stdout.close()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self.kill()

    def __enter__(self) -> "H264RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------- the server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that PyGObject, gst-rtsp-server and the "
                        "GStreamer elements are installed")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", choices=("basic", "digest"), default="basic")
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ImportError, ValueError) as error:
        print("no GStreamer RTSP server for {} ({}); {}".format(sys.executable, error, INSTALL_HINT))
        return 3
    Gst.init(None)
    absent = [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]
    if absent:
        print("no GStreamer element {}; {}".format(", ".join(absent), INSTALL_HINT))
        return 3
    if args.check:
        print("ok: {}".format(Gst.version_string()))
        return 0

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(False)  # a session per client, each from frame 0
    factory.set_launch(
        "( appsrc name=frames is-live=true format=time do-timestamp=false "
        "caps=video/x-raw,format=BGR,width={w},height={h},framerate={fps}/1000 "
        "! videoconvert ! video/x-raw,format=I420 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )".format(
            w=args.width, h=args.height, fps=int(round(args.fps * 1000)), gop=max(1, int(round(args.fps)))))
    duration = int(round(Gst.SECOND / args.fps))

    def configure(_factory, media) -> None:
        frames = media.get_element().get_by_name("frames")
        state = {"index": 0, "start": None}

        def need_data(source, _length) -> None:
            # Paced to the frame rate in wall-clock time, as a camera delivers: never faster.
            index = state["index"]
            if state["start"] is None:
                state["start"] = time.monotonic()
            delay = state["start"] + index / args.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            buffer = Gst.Buffer.new_wrapped(pattern_bgr(index, args.width, args.height))
            buffer.pts = buffer.dts = index * duration
            buffer.duration = duration
            state["index"] = index + 1
            source.emit("push-buffer", buffer)

        frames.connect("need-data", need_data)

    factory.connect("media-configure", configure)
    user, password = os.environ.get(USER_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        if args.auth == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(user, password or "", token)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
    server.get_mount_points().add_factory(PATH, factory)
    try:
        server.attach(None)
    except GLib.Error as error:
        print("cannot listen on 127.0.0.1:{}: {}".format(args.port, error.message))
        return 1
    loop = GLib.MainLoop()
    for number in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, number, loop.quit)
    print("rtsp://127.0.0.1:{}{}".format(server.get_bound_port(), PATH), flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
