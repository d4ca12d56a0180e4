"""Findings posted to Alertmanager's v2 API (`POST /api/v2/alerts`), from `check` (once) and
the exporter (every round).

An alert is the finding: `alertname` its id, labels `severity`, `instance`, and `netns`,
`pod`, `container` where known; annotations the summary, the first action and the evidence.
`endsAt` lies `ttl` seconds ahead and is renewed each round, so a finding that stops being
posted resolves by itself; one that disappears while the poster runs is resolved at once
(posted again with `endsAt` now). Alertmanager identifies an alert by its labels, so a
restart re-posts the same alerts instead of duplicating them.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.times import iso_ms
from tcpdoctor.util.text import visible

TIMEOUT = 5.0
ANNOTATION_BYTES = 1000  # an evidence line longer than this is cut


@dataclass
class Client:
    """Where and how to post: the URL, basic auth, TLS (the exporter's web config keys)."""

    url: str
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    timeout: float = TIMEOUT

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """One POST; raises TcpDoctorError with the reason on any failure."""
        request = urllib.request.Request(self.url.rstrip("/") + "/api/v2/alerts",
                                         data=json.dumps(alerts).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode())
            request.add_header("Authorization", "Basic " + token.decode())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self._tls()) as reply:
                reply.read(65536)
        except urllib.error.HTTPError as exc:
            raise TcpDoctorError(Msg("Alertmanager {url} answered {code}", url=self.url,
                                     code=exc.code)) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TcpDoctorError(Msg("Alertmanager {url} unreachable: {reason}", url=self.url,
                                     reason=reason)) from None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def load_client(url: str, config: str | None) -> Client:
    """The client for URL, with `basic_auth` and `tls_config` from a YAML file if given."""
    if not url.startswith(("http://", "https://")):
        raise TcpDoctorError(Msg("--alertmanager: {url!r} is not an http:// or https:// URL",
                                 url=url))
    if config is None:
        return Client(url)
    import yaml

    try:
        with open(config) as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TcpDoctorError(Msg("--alertmanager-config {path}: {error}", path=config,
                                 error=getattr(exc, "strerror", None) or exc)) from None
    auth, tls = data.get("basic_auth") or {}, data.get("tls_config") or {}
    return Client(url, auth.get("username"), auth.get("password"), tls.get("ca_file"),
                  tls.get("cert_file"), tls.get("key_file"),
                  bool(tls.get("insecure_skip_verify")), float(data.get("timeout", TIMEOUT)))


@dataclass
class Poster:
    """Posts each round's findings, keeping when each began, and resolves those gone."""

    client: Client
    instance: str = field(default_factory=socket.gethostname)
    ttl: float = 300.0
    started: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    active: dict[tuple[tuple[str, str], ...], dict[str, Any]] = field(default_factory=dict)

    def round(self, findings: list[tuple[dict[str, Any], Any]]) -> None:
        """findings: (where: netns/pod/container, finding) of one diagnosis."""
        now = time.time()
        alerts: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for where, f in findings:
            labels = self.labels(where, f)
            key = tuple(sorted(labels.items()))
            begun = self.started.setdefault(key, now)
            alerts[key] = {"labels": labels, "annotations": annotations_of(f),
                           "startsAt": iso_ms(begun), "endsAt": iso_ms(now + self.ttl)}
        gone = [dict(a, endsAt=iso_ms(now)) for k, a in self.active.items() if k not in alerts]
        for key in [k for k in self.started if k not in alerts]:
            del self.started[key]
        self.active = alerts
        if alerts or gone:
            self.client.post([*alerts.values(), *gone])

    def labels(self, where: dict[str, Any], f: Any) -> dict[str, str]:
        out = {"alertname": f.id, "severity": str(f.severity), "instance": self.instance,
               "source": "tcpdoctor"}
        for key in ("netns", "pod", "container"):
            value = where.get(key)
            if value:
                out[key] = visible(str(value))
        return out


def annotations_of(f: Any) -> dict[str, str]:
    evidence = " · ".join(f"{k}={v}" for k, v in f.evidence.items() if k != "cost")
    out = {"summary": visible(str(f.summary)), "title": visible(str(f.title)),
           "evidence": visible(evidence)[:ANNOTATION_BYTES]}
    if f.actions:
        out["action"] = visible(str(f.actions[0]))
    return out
