#!/usr/bin/python3
"""Serve an H.264 mp4 over RTSP for tests, like a live camera, without re-encoding.

    /usr/bin/python3 tools/rtspserve.py --port 8554 --path /clip --file clip.mp4 [--loop]

Prints `READY rtsp://127.0.0.1:PORT/PATH` once listening (exit status 3 if
the port cannot be bound); exits on SIGTERM/SIGINT.

A feeder pipeline (filesrc ! qtdemux ! h264parse ! appsink) plays the file
in real time while anyone watches and hands each access unit to the appsrc
of the one shared RTSP media, which is live: clients that join late start
at the next keyframe, nobody's PLAY seeks anybody else's stream, and a lone
client sees the clip from frame 0. With --loop the feeder rewinds by
segment seeks, so timestamps keep increasing; without it the stream ends
(EOS) after the clip. Needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0
(so /usr/bin/python3, not a pyenv python).
"""
import argparse
import os
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class Feeder:
    """Plays the file into every playing media's appsrc."""

    def __init__(self, path, loop, log=None):
        self.loop = loop
        self.log = log  # file: "frame_index wall_clock_ns" per frame pushed to a lone client
        self.pushed = 0
        self.pipe = Gst.parse_launch(
            "filesrc name=file ! qtdemux ! h264parse config-interval=-1 ! "
            "video/x-h264,stream-format=byte-stream,alignment=au ! "
            "appsink name=sink sync=true max-buffers=8 emit-signals=true")
        self.pipe.get_by_name("file").set_property("location", path)
        sink = self.pipe.get_by_name("sink")
        sink.connect("new-sample", self.on_sample)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.on_message)
        self.lock = threading.Lock()
        self.srcs = {}  # appsrc -> timestamp offset, None until its first keyframe
        self.running = False
        self.rewind(Gst.SeekFlags.FLUSH)  # preroll, to learn the caps
        self.caps = sink.get_static_pad("sink").get_current_caps()

    def rewind(self, flags):
        """Prerolls (if stopped) and seeks to the start."""
        if self.loop:
            flags |= Gst.SeekFlags.SEGMENT
        if not self.running:
            self.pipe.set_state(Gst.State.PAUSED)
            self.preroll()
        self.pipe.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)
        if not self.running:
            self.preroll()

    def preroll(self):
        if self.pipe.get_state(10 * Gst.SECOND)[0] != Gst.StateChangeReturn.SUCCESS:
            print("rtspserve: cannot play %s" % self.pipe.get_by_name("file").get_property("location"), file=sys.stderr)
            os._exit(4)

    def add(self, src, alive):
        """Feeds src once its pipeline has a clock (is playing), while alive()."""
        if not alive():
            return False
        if src.get_clock() is None:
            GLib.timeout_add(5, self.add, src, alive)
            return False
        with self.lock:
            self.srcs[src] = None
            first = len(self.srcs) == 1
        if first:  # a lone client sees the clip from frame 0
            self.rewind(Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE)
            self.pipe.set_state(Gst.State.PLAYING)
            self.running = True
        return False

    def remove(self, src):
        with self.lock:
            self.srcs.pop(src, None)
            last = not self.srcs
        if last and self.running:
            # PAUSED, not READY or NULL: qtdemux would drop its (parse-time
            # linked) pad, and the next start would fail not-linked.
            self.pipe.set_state(Gst.State.PAUSED)
            self.running = False

    def on_sample(self, sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        rt = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
        with self.lock:
            for src, off in list(self.srcs.items()):
                clock = src.get_clock()
                if off is None:  # start each client at a keyframe, at its clock's now
                    if clock is None or buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
                        continue
                    off = clock.get_time() - src.get_base_time() - rt
                    self.srcs[src] = off
                out = buf.copy()
                out.pts, out.dts = max(0, rt + off), Gst.CLOCK_TIME_NONE
                src.emit("push-buffer", out)
                if self.log is not None and len(self.srcs) == 1:
                    self.log.write("%d %d\n" % (self.pushed, time.time_ns()))
                    self.log.flush()
                    self.pushed += 1
        return Gst.FlowReturn.OK

    def on_message(self, bus, msg):
        if msg.type == Gst.MessageType.SEGMENT_DONE:
            self.rewind(Gst.SeekFlags.NONE)  # no flush: running time goes on
        elif msg.type == Gst.MessageType.EOS:
            with self.lock:
                for src in self.srcs:
                    src.emit("end-of-stream")
        elif msg.type == Gst.MessageType.ERROR:
            print("rtspserve: feeder: %s" % msg.parse_error()[0].message, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/clip")
    ap.add_argument("--file", required=True)
    ap.add_argument("--loop", action="store_true", help="play the file forever")
    ap.add_argument("--log", help="append 'frame_index wall_clock_ns' for each frame sent (latency benches)")
    a = ap.parse_args()
    path = "/" + a.path.lstrip("/")
    if not os.path.isfile(a.file):
        sys.exit("rtspserve: no file %s" % a.file)
    Gst.init(None)
    feeder = Feeder(a.file, a.loop, open(a.log, "a") if a.log else None)

    def configure(factory, media):
        src = media.get_element().get_by_name("src")
        src.set_property("caps", feeder.caps)
        alive = [True]

        def unprepared(media):
            alive[0] = False
            feeder.remove(src)
        media.connect("unprepared", unprepared)
        feeder.add(src, lambda: alive[0])  # the live media needs data to prepare (DESCRIBE)

    server = GstRtspServer.RTSPServer(address="127.0.0.1", service=str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( appsrc name=src is-live=true format=time max-buffers=25 leaky-type=downstream ! "
                       "h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory(path, factory)
    try:
        if server.attach(None) == 0:
            raise GLib.Error("attach failed")
    except GLib.Error as e:
        print("rtspserve: cannot listen on 127.0.0.1:%d: %s" % (a.port, e), file=sys.stderr)
        sys.exit(3)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY rtsp://127.0.0.1:%d%s" % (a.port, path), flush=True)
    loop.run()
    feeder.pipe.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
