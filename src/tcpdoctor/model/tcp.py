"""TCP facts of the Linux kernel tcpdoctor mirrors, each table citing where it comes from."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg

# include/net/tcp_states.h
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12  # request socket; ss and tcpdoctor report it as SYN_RECV
TCP_BOUND_INACTIVE = 13  # inet_diag only; ss -tan does not list it, neither do we

# Index = kernel state number; the names docs/spec.md promises, in kernel order.
STATE_NAMES: tuple[str, ...] = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
)
STATE_BY_NAME: dict[str, int] = {name: i + 1 for i, name in enumerate(STATE_NAMES)}
NUM_STATES = 14  # array size covering every kernel state number (0..13)

# Every spelling users paste: ss (ESTAB, TIME-WAIT, UNCONN), netstat (TIME_WAIT, SYN_RECV),
# Windows netstat (LISTENING, FIN_WAIT_1/2), /proc hex codes are handled by the procfs parser.
STATE_ALIASES: dict[str, int] = {
    **STATE_BY_NAME,
    "ESTAB": TCP_ESTABLISHED,
    "SYN-SENT": TCP_SYN_SENT,
    "SYN-RECV": TCP_SYN_RECV,
    "SYN_RCVD": TCP_SYN_RECV,
    "SYN_RECEIVED": TCP_SYN_RECV,
    "FIN-WAIT-1": TCP_FIN_WAIT1,
    "FIN_WAIT_1": TCP_FIN_WAIT1,
    "FIN-WAIT-2": TCP_FIN_WAIT2,
    "FIN_WAIT_2": TCP_FIN_WAIT2,
    "TIME-WAIT": TCP_TIME_WAIT,
    "UNCONN": TCP_CLOSE,
    "CLOSED": TCP_CLOSE,
    "CLOSE-WAIT": TCP_CLOSE_WAIT,
    "LAST-ACK": TCP_LAST_ACK,
    "LISTENING": TCP_LISTEN,
}

# net-tools translates the state column under a non-English locale (po/*.po of
# github.com/ecki/net-tools at 2ab3c5e: ca, cs, de, pt_BR, sv; the other catalogs keep the
# English names). A paste from such a box carries these words.
LOCALIZED_STATES: dict[str, int] = {
    "ESTABLERT": TCP_ESTABLISHED, "SYNSENT": TCP_SYN_SENT, "SYNRECV": TCP_SYN_RECV,
    "FINWAIT1": TCP_FIN_WAIT1, "FINWAIT2": TCP_FIN_WAIT2, "TEMPS": TCP_TIME_WAIT,
    "TANCA": TCP_CLOSE, "CLOSEWAIT": TCP_CLOSE_WAIT, "LASTACK": TCP_LAST_ACK,
    "ESCOLTA": TCP_LISTEN, "TANCAMENT": TCP_CLOSING,  # ca
    "SPOJENO": TCP_ESTABLISHED, "ZAVŘEN": TCP_CLOSE, "POSLEDNÍ ACK": TCP_LAST_ACK,
    "NASLOUCHÁ": TCP_LISTEN, "ZAVÍRÁ": TCP_CLOSING,  # cs
    "VERBUNDEN": TCP_ESTABLISHED,  # de
    "ESTABELECIDA": TCP_ESTABLISHED, "SYN_ENVIADO": TCP_SYN_SENT,
    "SYN_RECEBIDO": TCP_SYN_RECV, "ESPERA_FIN1": TCP_FIN_WAIT1, "ESPERA_FIN2": TCP_FIN_WAIT2,
    "FECHAR": TCP_CLOSE, "ESPERANDO_FECHAR": TCP_CLOSE_WAIT, "ÚLTIMO_ACK": TCP_LAST_ACK,
    "OUÇA": TCP_LISTEN, "FECHANDO": TCP_CLOSING,  # pt_BR
    "ETABLERAD": TCP_ESTABLISHED, "STÄNG": TCP_CLOSE, "STÄNG_VÄNTA": TCP_CLOSE_WAIT,
    "LYSSNAR": TCP_LISTEN, "STÄNGER": TCP_CLOSING,  # sv
    # German Windows netstat translates its state column too (the other display languages
    # seen in pastes, Chinese among them, keep the English words).
    "ABHÖREN": TCP_LISTEN, "HERGESTELLT": TCP_ESTABLISHED, "WARTEND": TCP_TIME_WAIT,
    "SCHLIESSEN_WARTEN": TCP_CLOSE_WAIT, "SYN_GESENDET": TCP_SYN_SENT,
    "SYN_EMPFANGEN": TCP_SYN_RECV, "FIN_WARTEN_1": TCP_FIN_WAIT1,
    "FIN_WARTEN_2": TCP_FIN_WAIT2, "LETZTES_ACK": TCP_LAST_ACK, "SCHLIESSEND": TCP_CLOSING,
    "GESCHLOSSEN": TCP_CLOSE,
}
STATE_ALIASES.update(LOCALIZED_STATES)

# Service names netstat and ss print without -n (IANA names, as in /etc/services), for the
# ports pasted captures name instead of numbering.
SERVICE_PORTS: dict[str, int] = {
    "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "www": 80,
    "www-http": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111, "ntp": 123, "imap": 143,
    "imap2": 143, "snmp": 161, "ldap": 389, "https": 443, "microsoft-ds": 445,
    "submission": 587, "ldaps": 636, "rsync": 873, "imaps": 993, "pop3s": 995,
    "ms-sql-s": 1433, "nfs": 2049, "mysql": 3306, "ms-wbt-server": 3389, "svn": 3690,
    "sip": 5060, "xmpp-client": 5222, "postgresql": 5432, "postgres": 5432, "amqp": 5672,
    "x11": 6000, "redis": 6379, "http-alt": 8080, "webcache": 8080, "git": 9418,
    "memcache": 11211, "mongodb": 27017, "zabbix-agent": 10050, "zabbix-trapper": 10051,
}

# inet_diag timer codes (net/ipv4/inet_diag.c, tcp_diag): what idiag_timer means.
TIMER_NONE = 0
TIMER_RETRANSMIT = 1
TIMER_KEEPALIVE = 2
TIMER_TIME_WAIT = 3
TIMER_PROBE = 4

AF_INET = 2
AF_INET6 = 10

# net/ipv4/af_inet.c (inet_init_net): the ephemeral port range a kernel boots with; used
# where the input does not say (a pasted netstat, or a nonsensical configured range).
DEFAULT_PORT_RANGE = (32768, 60999)


def normalize_states(states: np.ndarray) -> np.ndarray:
    """Fold NEW_SYN_RECV request sockets into SYN_RECV, as ss and docs/spec.md do."""
    return np.where(states == TCP_NEW_SYN_RECV, TCP_SYN_RECV, states).astype(np.uint8)


def state_counts(states: np.ndarray, weights: np.ndarray | None = None) -> dict[str, int]:
    """Counts for all 11 states (zeros included), table-driven with one bincount."""
    counts = np.bincount(normalize_states(states), weights=weights, minlength=NUM_STATES)
    counts = counts.astype(np.int64)
    return {name: int(counts[i + 1]) for i, name in enumerate(STATE_NAMES)}


def parse_state_name(text: str) -> int:
    key = text.strip().upper().replace(" ", "_")
    if key in STATE_ALIASES:
        return STATE_ALIASES[key]
    key = key.replace("-", "_")
    if key in STATE_ALIASES:
        return STATE_ALIASES[key]
    raise ValueError(f"unknown TCP state {text!r}")


def parse_state_option(values: Iterable[str], option: str = "--state",
                       groups: bool = False) -> list[int]:
    """The one reading of a --state option (top, watch, history, trace): kernel state
    numbers; groups=True also takes non-established. Unknown names: one clear error."""
    out: list[int] = []
    for v in values:
        if groups and v.strip().lower().replace("_", "-") in ("non-established", "non-estab"):
            out += [n for n in range(NUM_STATES) if n != TCP_ESTABLISHED]
            continue
        try:
            out.append(parse_state_name(v))
        except ValueError:
            raise TcpDoctorError(Msg("{option}: unknown TCP state {v!r} (e.g. time-wait, "
                                     "close-wait, syn-recv{more})", option=option, v=v,
                                     more=", non-established" if groups else "")) from None
    return out
