"""The options commands share, each defined once.

Every command that reads live sockets takes the same set (SOCKET_OPTIONS) from one
decorator; an option that makes no sense for a command is still listed, with the reason
in its help, and refused if used.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.sources.target import SOURCES, Target

F = Callable[..., Any]
NETNS_HELP = ("Another network namespace: a name under /run/netns, a path such as "
              "/proc/PID/ns/net, pod:NAMESPACE/NAME or container:ID-OR-NAME; `self`: the one "
              "tcpdoctor runs in.")
ALL_HELP = " `all` (or --all-netns): every namespace on the host, containers' included."
# The commands that take --netns all (the exporter has its own --all-netns).
SWEEPING = ("check", "states", "top", "snapshot", "watch", "record", "conntrack")
# The option set of every command that reads live sockets (docs/spec.md, common options).
SOCKET_OPTIONS = ("--json", "--netns", "-4", "-6", "--source", "--no-processes")


@dataclass(frozen=True)
class SocketOptions:
    as_json: bool
    netns: tuple[str, ...]
    ipv4_only: bool
    ipv6_only: bool
    source: str
    no_processes: bool

    @property
    def one_netns(self) -> str | None:
        return self.netns[0] if self.netns else None

    @property
    def all_netns(self) -> bool:
        return self.one_netns == "all"

    def families(self) -> tuple[bool, bool]:
        """(IPv4, IPv6) to read: -4 and -6 together mean both."""
        if self.ipv4_only and self.ipv6_only:
            return True, True
        return not self.ipv6_only, not self.ipv4_only

    def target(self, netns: str | None = None, owners: bool | None = None,
               every_netns: bool = False) -> Target:
        """What to read; every_netns: the caller handles --netns all itself (the Target is then
        the host's). pod:NS/NAME and container:ID resolve to that namespace's path."""
        v4, v6 = self.families()
        spec = netns if netns is not None else self.one_netns
        if spec == "all":
            if not every_netns:
                raise TcpDoctorError(Msg("--netns all: this command reads one namespace "
                                         "({commands} read them all); use --netns NAME",
                                         commands=', '.join(SWEEPING)))
            spec = None
        elif spec == "self":  # only the namespace tcpdoctor runs in
            spec = None
        elif spec is not None and spec.startswith(("pod:", "container:")):
            spec = _resolve_selector(spec)
        return Target(spec, self.source, v4, v6,
                      (not self.no_processes) if owners is None else owners)


def socket_options(command: str, not_used: dict[str, str] | None = None,
                   many_netns: bool = False, no_processes_help: str | None = None,
                   netns_help: str | None = None, json_help: str | None = None,
                   ) -> Callable[[F], F]:
    """Add the common options; the command receives them as one `sock: SocketOptions`.

    not_used: option -> why it makes no sense for this command (listed, refused if used).
    netns_help, json_help: what the option means for this command, when it is not the
    usual (trace filters events by namespace; its JSON is a stream).
    """
    why = not_used or {}

    def helptext(opt: str, text: str) -> str:
        return f"Not used by {command}: {why[opt]}" if opt in why else text

    opts = [
        click.option("--json", "as_json", is_flag=True,
                     help=helptext("--json", json_help
                                   or "Machine output on stdout (nothing else there).")),
        click.option("--netns", multiple=many_netns, metavar="NAME|PATH",
                     shell_complete=_complete_netns,
                     help=helptext("--netns", NETNS_HELP + (" Repeatable." if many_netns
                                                            else "")
                                   + (ALL_HELP if command in SWEEPING else "")
                                   + (" " + netns_help if netns_help else ""))),
        click.option("-4", "ipv4_only", is_flag=True, help=helptext("-4", "IPv4 sockets only.")),
        click.option("-6", "ipv6_only", is_flag=True, help=helptext("-6", "IPv6 sockets only.")),
        click.option("--source", type=click.Choice(SOURCES), default="auto", show_default=True,
                     help=helptext("--source", "Where to read sockets from (auto = netlink, "
                                   "else /proc/net/tcp).")),
        click.option("--no-processes", is_flag=True,
                     help=helptext("--no-processes", no_processes_help
                                   or "Skip the owner lookup (faster; no process names).")),
    ]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            netns = kwargs.pop("netns")
            if command in SWEEPING and kwargs.pop("all_netns"):
                netns = "all"
            sock = SocketOptions(kwargs.pop("as_json"),
                                 tuple(netns) if many_netns else ((netns,) if netns else ()),
                                 kwargs.pop("ipv4_only"), kwargs.pop("ipv6_only"),
                                 kwargs.pop("source"), kwargs.pop("no_processes"))
            _refuse_unused(sock, why)
            return fn(sock=sock, **kwargs)

        every = opts if command not in SWEEPING else [*opts, click.option(
            "--all-netns", is_flag=True, help="Every network namespace (= --netns all).")]
        for opt in reversed(every):
            wrapper = opt(wrapper)
        return wrapper
    return decorate


def default_scope(sock: SocketOptions) -> tuple[SocketOptions, list[str]]:
    """check and watch without --netns: every namespace when run as root in the host's own
    and others exist (else the current one, with a note when others were not readable)."""
    if sock.netns:
        return sock, []
    from tcpdoctor.sources.scope import default_scope as scope_of

    scope = scope_of(sock.target())
    if scope.every:
        return dataclasses.replace(sock, netns=("all",)), []
    return sock, scope.notes


def other_namespaces_hint(sock: SocketOptions) -> str | None:
    """states, top, snapshot keep the current namespace: one line when others hold
    sockets (root in the host's namespace) or could not be looked at."""
    if sock.netns:
        return None
    from tcpdoctor.sources.scope import default_scope as scope_of

    return scope_of(sock.target(), count=True).hint()


def can_trace(sock: SocketOptions) -> None:
    """--trace (check, watch): one namespace, root and tracefs, or exit 3 with the reason
    before anything is sampled."""
    if sock.all_netns:
        raise TcpDoctorError(Msg("--trace goes with one namespace (--netns NAME), not all"))
    from tcpdoctor.sources.tracefs.instance import tracefs_root

    tracefs_root()


def _resolve_selector(spec: str) -> str:
    """pod:NS/NAME or container:ID -> the path of that one network namespace."""
    from tcpdoctor.sources import namespaces

    hit = namespaces.select(namespaces.discover(), spec)
    if len(hit) > 1:
        raise TcpDoctorError(Msg("--netns {spec}: {n} namespaces match "
                                 "({which}); be more specific", spec=spec,
                                 n=len(hit),
                                 which=', '.join(n.label for n in hit[:5])))
    return namespaces.entry_path(hit[0])


def _refuse_unused(sock: SocketOptions, why: dict[str, str]) -> None:
    used = {"--json": sock.as_json, "--netns": bool(sock.netns), "-4": sock.ipv4_only,
            "-6": sock.ipv6_only, "--source": sock.source != "auto",
            "--no-processes": sock.no_processes}
    for opt, reason in why.items():
        if used[opt]:
            raise TcpDoctorError(Msg("{opt}: not used by this command: {reason}", opt=opt,
                                     reason=reason))


def threshold_options(fn: F) -> F:
    """--config and --threshold; the command receives `thresholds` (resolved)."""
    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        kwargs["thresholds"] = load_thresholds(kwargs.pop("config"), kwargs.pop("threshold"))
        return fn(**kwargs)

    wrapper = click.option("--threshold", multiple=True, metavar="ID.KEY=VALUE",
                           shell_complete=_complete_threshold,
                           help="Override one threshold, e.g. CLOSE_WAIT_LEAK.warning=50.")(
        wrapper)
    return click.option("--config", type=click.Path(dir_okay=False),
                        help="TOML file of thresholds: [thresholds.RULE_ID] key = value.")(
        wrapper)


def alertmanager_options(when: str) -> Callable[[F], F]:
    """--alertmanager URL and --alertmanager-config FILE (check, exporter); `when` says how
    often the command posts. The command receives `alertmanager_url`, `alertmanager_config`."""
    def decorate(fn: F) -> F:
        fn = click.option("--alertmanager-config", type=click.Path(dir_okay=False),
                          metavar="FILE",
                          help="YAML: basic_auth (username, password), tls_config (ca_file, "
                               "cert_file, key_file, insecure_skip_verify), timeout.")(fn)
        return click.option("--alertmanager", "alertmanager_url", metavar="URL",
                            help=when)(fn)
    return decorate


def alertmanager_client(url: str | None, config: str | None) -> Any:
    """The Alertmanager client the two options describe (None without them)."""
    if not url and not config:
        return None
    from tcpdoctor.exporter.alertmanager import load_client

    if not url:
        raise TcpDoctorError(Msg("--alertmanager-config goes with --alertmanager URL"))
    return load_client(url, config)


def _complete_netns(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from tcpdoctor.sources.netns import named

    return [n for n in ["all", *named()] if n.startswith(incomplete)]


def _complete_threshold(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[str]:
    """RULE_ID.key= for every rule threshold, with its default as a hint."""
    from tcpdoctor.analysis.thresholds import defaults

    return [f"{rid}.{key}={value:g}" for rid, keys in defaults().items()
            for key, value in keys.items() if f"{rid}.{key}".startswith(incomplete)]


def load_thresholds(config: str | None, overrides: tuple[str, ...]) -> Any:
    import tomllib

    from tcpdoctor.analysis.thresholds import resolve

    data = None
    if config:
        try:
            with open(config, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise TcpDoctorError(f"{config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise TcpDoctorError(Msg("{config}: not valid TOML ({exc})", config=config,
                                     exc=exc)) from None
    return resolve(data, overrides, config or "config")
