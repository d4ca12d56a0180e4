"""`tcpdoctor exporter`: serve /metrics, or write node_exporter textfiles."""

from __future__ import annotations

import os
import sys
import time

from tcpdoctor.atomic import atomic_write, remove_stale_temps
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.malloc import limit_malloc_arenas
from tcpdoctor.sources import netns as netns_mod


def run_exporter(listen: str, netns_list: list[str], all_netns: bool, top_n: int,
                 max_seconds: float, processes: bool, textfile_dir: str | None,
                 interval: float, once: bool, web_config_file: str | None,
                 verbose: bool) -> None:
    try:
        from prometheus_client import generate_latest

        from tcpdoctor import exporter, exporter_http
    except ImportError:
        raise TcpDoctorError("the exporter needs prometheus_client: "
                             "pip install 'tcpdoctor[exporter]'") from None
    limit_malloc_arenas()
    targets: list[str | None]
    if all_netns:
        targets = exporter.all_netns()
    elif netns_list:
        targets = [netns_mod.resolve(n) and n for n in netns_list]
    else:
        targets = [None]
    registry = exporter.build_registry(targets, top_n, max_seconds, processes)
    if textfile_dir:
        if not os.path.isdir(textfile_dir):
            raise TcpDoctorError(f"--textfile: {textfile_dir} is not a directory")
        path = os.path.join(textfile_dir, "tcpdoctor.prom")
        while True:
            remove_stale_temps(path)
            atomic_write(path, generate_latest(registry).decode())
            if once:
                return
            time.sleep(interval)
    web = exporter_http.load_web_config(web_config_file)

    def ready(addr: tuple[str, int]) -> None:
        scheme = "https" if web.tls else "http"
        sys.stderr.write(f"tcpdoctor exporter: serving {scheme}://{addr[0]}:{addr[1]}/metrics "
                         f"for {', '.join(t or 'host' for t in targets)}\n")
        sys.stderr.flush()

    exporter_http.serve(registry, listen, web, verbose, ready)
