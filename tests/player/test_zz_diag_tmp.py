from __future__ import annotations
import os
import pytest
from pathlib import Path
from cdn.hostport import HostPort
from player.config import PlayerConfig
from player.fetch import EdgePool
from player.resolve import Resolver
from player.session import play
from tests.player.netfixtures import DnsResponder
from tests.player.throttle import ThrottleProxy
from tests.player.test_e2e_throttle import long_store, origin_url, edge_port  # noqa
from tests.player import test_e2e_throttle as T

@pytest.mark.slow
@pytest.mark.parametrize("i", range(int(os.environ.get("N", "3"))))
def test_diag(long_store: Path, edge_port: int, i: int) -> None:
    with ThrottleProxy(("127.0.0.1", edge_port), rate_bps=T.BEFORE_BPS) as proxy, \
            DnsResponder({"video.cdn.test": [("A", "127.0.0.1")]}) as dns:
        config = PlayerConfig(url=f"http://video.cdn.test:{proxy.port}/videos/demo/manifest.mpd",
                              dns=HostPort("127.0.0.1", dns.port), speed=T.SPEED, quiet=True,
                              max_buffer=T.MAX_BUFFER, startup=4, abr=os.environ.get("ABR"))
        with T.TimedFetcher(EdgePool(Resolver(server=config.dns)), timeout=10, drop=lambda: proxy.set_rate(T.AFTER_BPS)) as fetcher:
            result = play(config, fetcher)
        d = fetcher.dropped_at or 1e18
    fa = next((r.index for r in result.records if fetcher.finished[r.url] >= d), None)
    with open("/tmp/diag/out.txt", "a") as f:
        f.write(f"run {i} abr={result.abr} load={os.getloadavg()[0]:.2f} first_after={fa} "
                f"reps={''.join(r.representation for r in result.records)} stalls={result.summary.stall_count} "
                f"minbuf_after={min((r.buffer_seconds for r in result.records[fa:]), default=None) if fa is not None else None}\n")
