"""A NAT lab: "pods" (namespaces) behind a gateway namespace that masquerades them
(nftables) towards a server namespace. The gateway's conntrack table holds every
connection; `conntrack -L` there is the oracle.

    pod0 10.77.0.2 ─┐
    pod1 10.77.1.2 ─┼─ gw (masquerade, a chosen port range) 198.18.50.1 ── srv 198.18.50.2
    ...            ─┘
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, c_locale
from tcpdoctor.lab.net import LabNet, run_ip, veth

SERVER_ADDR = "198.18.50.2"
GATEWAY_ADDR = "198.18.50.1"


def pod_addr(i: int) -> str:
    return f"10.77.{i}.2"


@dataclass
class NatLab:
    """pods namespaces behind gw (masquerade to ports, e.g. "40000-40009"), and srv."""

    pods: int = 2
    ports: str | None = None
    prefix: str = "tdnat"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    base: LabNet | None = None  # the workers' home (its own two namespaces stay unused)

    @property
    def gw(self) -> str:
        return f"{self.prefix}-{self.tag}-gw"

    @property
    def srv(self) -> str:
        return f"{self.prefix}-{self.tag}-srv"

    def pod(self, i: int) -> str:
        return f"{self.prefix}-{self.tag}-pod{i}"

    @property
    def namespaces(self) -> list[str]:
        return [self.gw, self.srv, *(self.pod(i) for i in range(self.pods))]

    def __enter__(self) -> NatLab:
        self.base = LabNet(prefix=f"{self.prefix}-{self.tag}-w").__enter__()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        assert self.base is not None
        for ns in self.namespaces:
            run_ip("netns", "add", ns)
            run_ip("-n", ns, "link", "set", "lo", "up")
        veth(self.gw, "tdsrv0", f"{GATEWAY_ADDR}/24", self.srv, "tdgw0", f"{SERVER_ADDR}/24")
        for i in range(self.pods):
            pod = self.pod(i)
            veth(self.gw, f"tdpod{i}", f"10.77.{i}.1/24", pod, "eth0", f"{pod_addr(i)}/24")
            run_ip("-n", pod, "route", "add", "default", "via", f"10.77.{i}.1")
        self.base.sysctl(self.gw, "net.ipv4.ip_forward", "1")
        # A port range applies to TCP (nft wants the protocol matched first); the rest
        # is masqueraded as usual.
        ranged = (f"add rule ip tdnat post oifname \"tdsrv0\" meta l4proto tcp masquerade "
                  f"to :{self.ports}\n" if self.ports else "")
        self.nft(self.gw, "add table ip tdnat\n"
                 "add chain ip tdnat post { type nat hook postrouting priority 100 ; }\n"
                 f"{ranged}add rule ip tdnat post oifname \"tdsrv0\" masquerade\n")

    def nft(self, ns: str, script: str) -> None:
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                              capture_output=True, text=True, check=False,
                              env=c_locale())
        if proc.returncode != 0:
            raise TcpDoctorError(Msg("nft in {ns}: {error}", ns=ns, error=proc.stderr.strip()))

    def drop_endings_from(self, i: int) -> None:
        """The gateway drops FIN and RST from pod i before conntrack sees them (prerouting,
        ahead of conntrack's priority -200): its entries stay open when its sockets go."""
        self.nft(self.gw, "add table inet tdcut\n"
                 "add chain inet tdcut cut { type filter hook prerouting priority -300 ; }\n"
                 f"add rule inet tdcut cut ip saddr {pod_addr(i)} "
                 "tcp flags & (fin | rst) != 0 drop\n")

    def conntrack_list(self, ns: str | None = None) -> list[str]:
        """`conntrack -L -p tcp` in the gateway (or ns): the oracle's lines."""
        proc = subprocess.run(["ip", "netns", "exec", ns or self.gw, "conntrack", "-L", "-p",
                               "tcp"], capture_output=True, text=True, check=False,
                              env=c_locale())
        if proc.returncode != 0:
            raise TcpDoctorError(Msg("conntrack -L: {error}", error=proc.stderr.strip()))
        return [line for line in proc.stdout.splitlines() if line.startswith("tcp")]

    def close(self) -> None:
        if self.base is not None:
            self.base.close()  # its workers first: they live in these namespaces
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False,
                           env=c_locale())
