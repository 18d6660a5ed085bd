"""Locust scenario for people who prefer Locust to `cdn loadtest` (optional: `pip install .[locust]`).

Each Locust user is a DASH viewer: it picks a video by Zipf popularity, fetches the manifest, then
the chunks at playback pace with the same buffer and throughput rule as `cdn loadtest`
(`cdn.loadmodel`). Run against one edge, for example:

    locust -f locustfile.py --host http://127.0.1.1:8080 --users 200 --spawn-rate 50 --run-time 60s --headless

Settings through the environment: CDN_VIDEOS (comma separated, default loadtest-1..4), CDN_ZIPF (1.0).
"""

from __future__ import annotations

import os
import random
import time

from locust import HttpUser, task  # type: ignore[import-not-found]

from cdn.loadmodel import (
    PlayerState,
    after_fetch,
    choose_rendition,
    drained,
    pick,
    video_plan,
    wait_time,
    zipf_cdf,
)

VIDEOS = [
    v for v in os.environ.get("CDN_VIDEOS", "loadtest-1,loadtest-2,loadtest-3,loadtest-4").split(",") if v
]
CDF = zipf_cdf(len(VIDEOS), float(os.environ.get("CDN_ZIPF", "1.0")))
TARGET_BUFFER = 8.0


class Viewer(HttpUser):  # type: ignore[misc]
    """One viewer playing whole videos one after another."""

    @task
    def watch(self) -> None:
        from player.mpd import parse_mpd

        video = VIDEOS[pick(CDF, random.random())]
        manifest = self.client.get(f"/videos/{video}/manifest.mpd", name="manifest")
        if manifest.status_code != 200:
            return
        plan = video_plan(parse_mpd(manifest.content, base_url=manifest.url), video)
        bandwidths = [r.bandwidth for r in plan.renditions]
        state, inited = PlayerState(), set()
        while state.next_chunk < plan.chunks:
            rep = choose_rendition(bandwidths, state.throughput)
            init = plan.renditions[rep].init
            if init and rep not in inited:
                self.client.get(init, name="init")
                inited.add(rep)
            started = time.monotonic()
            resp = self.client.get(plan.renditions[rep].media[state.next_chunk], name="chunk")
            took = time.monotonic() - started
            state = after_fetch(state, rendition=rep, seconds=took, size=len(resp.content),
                                segment_seconds=plan.segment_seconds, speed=1.0)  # fmt: skip
            pause = wait_time(state, target=TARGET_BUFFER, speed=1.0)
            if pause > 0:
                time.sleep(pause)  # gevent-patched under Locust: yields to the other users
                state = drained(state, pause, 1.0)
