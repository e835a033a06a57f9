"""``dqad serve``: the runs of a state folder, their reports and feedback buttons, on 127.0.0.1.

On AWS a business user's answer to an alert is a click on a signed link, served by the notifier's
feedback function URL. Locally this page is that function: the buttons are signed links
(:mod:`dqad.signing`, with the state folder's secret, exactly as the notifier signs the email's
links), and ``/feedback`` is answered by the feedback function's own code
(:func:`dqad_notifier.feedback_page.handle`: GET shows the confirmation, POST records the label),
writing ``labels/<dataset>/`` straight into the state folder, where the next ``dqad run`` reads it.

The server listens on the loopback interface only and answers one request at a time (the standard
library's :mod:`http.server`); the signing secret never leaves the state folder.
"""

from __future__ import annotations

import argparse
import html
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from dqad_dev.run import DEFAULT_PORT, DEFAULT_STATE, SECRET_NAME, StateDir, feedback_base_url

HOST = "127.0.0.1"
LINK_TTL_S = 14 * 24 * 3600
_CSS = (
    "body{margin:0;background:#f1f5f9;font:15px/1.5 -apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#0f172a}"
    ".wrap{max-width:1100px;margin:0 auto;padding:20px 28px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}"
    "table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #e2e8f0;padding:6px 8px;"
    "text-align:left;font-size:14px}a.btn{display:inline-block;margin:2px 4px 2px 0;padding:4px 10px;border-radius:6px;"
    "background:#0f172a;color:#fff;text-decoration:none;font-size:13px}a.btn.alt{background:#991b1b}"
    ".k{color:#64748b}iframe{width:100%;height:900px;border:1px solid #e2e8f0;background:#fff;margin-top:12px}"
)


@dataclass(frozen=True)
class RunSummary:
    dataset: str
    run_id: str
    anomalies: int | None  # None: the run was not scored (failed, or no data)
    outcome: str


class Site:
    """The pages, over a state folder; ``feedback`` answers the signed links with the AWS function's code."""

    def __init__(self, state: StateDir, runtime: Any, base_url: str) -> None:
        from dqad_dev.feedback_cli import FolderStorage

        self.state = state
        self.rt = runtime
        self.base_url = base_url
        self.storage = FolderStorage(state.root)

    # -- data ------------------------------------------------------------------------------------
    def runs(self) -> list[RunSummary]:
        from dqad_dev.listen import run_outcome

        found = []
        for folder in sorted((self.state.root / "runs").glob("*/*"), key=lambda p: p.name, reverse=True):
            if not folder.is_dir():
                continue
            dataset, run_id = folder.parent.name, folder.name
            scored = self.state.root / "events" / run_id / "AnomaliesScored.json"
            count = None
            if scored.is_file():
                count = int(self.storage.get_json(self.storage.uri(f"events/{run_id}/AnomaliesScored.json"))["detail"]
                            ["anomaly_count"])
            found.append(RunSummary(dataset, run_id, count, run_outcome(self.storage, run_id).describe()))
        return found

    def anomalies(self, dataset: str, run_id: str) -> Any:
        uri = self.storage.uri(f"runs/{dataset}/{run_id}/scores.parquet")
        if not self.storage.exists(uri):
            return None
        scores = self.storage.read_parquet(uri)
        return scores[scores["is_anomaly"].astype(bool)].sort_values("score", ascending=False)

    def labels(self, dataset: str) -> dict[tuple[str, str], str]:
        import pandas as pd

        from dqad.feedback import read_labels

        frame = read_labels(self.storage, dataset)
        return {
            (str(series), pd.Timestamp(ts).isoformat()): str(label)
            for series, ts, label in zip(frame["series"], frame["timestamp"], frame["label"], strict=True)
        }

    def link(self, dataset: str, run_id: str, series: str, timestamp: str, label: str) -> str:
        from dqad.signing import feedback_link, make_claim
        from dqad_notifier.domain import feedback_keys

        keys = feedback_keys(self.rt)
        assert keys is not None, "serve configures the feedback URL and secret"
        return feedback_link(self.base_url, keys, make_claim(dataset, series, timestamp, label, run_id, LINK_TTL_S))

    # -- pages -----------------------------------------------------------------------------------
    def index(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(r.dataset)}</td><td><a href='/runs/{quote(r.dataset)}/{quote(r.run_id)}'>"
            f"{html.escape(r.run_id)}</a></td><td>{'—' if r.anomalies is None else r.anomalies}</td>"
            f"<td class=k>{html.escape(r.outcome)}</td></tr>"
            for r in self.runs()
        )
        body = (
            "<h1>dqad · runs</h1>"
            f"<p class=k>State folder {html.escape(str(self.state.root))}. Newest first.</p>"
            "<table><tr><th>dataset</th><th>run</th><th>anomalies</th><th>outcome</th></tr>"
            f"{rows or '<tr><td colspan=4>No run yet: run <code>dqad run --datasets FILE</code>.</td></tr>'}</table>"
        )
        return _page("runs", body)

    def run_page(self, dataset: str, run_id: str) -> str | None:
        import pandas as pd

        if not (self.state.run_dir(dataset, run_id)).is_dir():
            return None
        anomalies = self.anomalies(dataset, run_id)
        labels = self.labels(dataset)
        parts = [
            "<p><a href='/'>← all runs</a></p>",
            f"<h1>{html.escape(dataset)} · run {html.escape(run_id)}</h1>",
        ]
        if anomalies is None:
            parts.append("<p>This run was not scored (see its outcome on the list of runs).</p>")
        elif anomalies.empty:
            parts.append("<p>No anomaly in this run.</p>")
        else:
            parts.append(
                "<h2>Anomalies</h2><p class=k>Is a point expected (a planned backfill, a migration)? Say so: "
                "the next run learns from it.</p><table><tr><th>series</th><th>load (UTC)</th><th>actual</th>"
                "<th>expected range</th><th>score</th><th>your answer</th></tr>"
            )
            for row in anomalies.itertuples(index=False):
                series, stamp = str(row.series), pd.Timestamp(row.timestamp).isoformat()
                given = labels.get((series, stamp))
                answer = (
                    f"<b>marked {html.escape(given)}</b> " if given else ""
                ) + (
                    f"<a class=btn href='{html.escape(self.link(dataset, run_id, series, stamp, 'normal'))}'>"
                    "expected — not an anomaly</a>"
                    f"<a class='btn alt' href='{html.escape(self.link(dataset, run_id, series, stamp, 'anomaly'))}'>"
                    "confirmed incident</a>"
                )
                parts.append(
                    f"<tr><td>{html.escape(series)}</td><td>{row.timestamp:%Y-%m-%d %H:%M}</td>"
                    f"<td>{_num(row.value)}</td><td>{_num(row.expected_low)} – {_num(row.expected_high)}</td>"
                    f"<td>{row.score:.2f}</td><td>{answer}</td></tr>"
                )
            parts.append("</table>")
        report = f"/runs/{quote(dataset)}/{quote(run_id)}/report.html"
        if (self.state.run_dir(dataset, run_id) / "report.html").is_file():
            parts.append(f"<h2>Report</h2><p><a href='{report}'>open the report alone</a></p>"
                         f"<iframe title=report src='{report}'></iframe>")
        return _page(f"{dataset} {run_id}", "".join(parts))

    def feedback(self, method: str, query: str, body: bytes) -> dict:
        """One request to the feedback function, as its function URL would pass it."""
        from dqad_notifier.feedback_page import handle

        return handle(self.rt, url_event(method, query, body))


def _num(value: float) -> str:
    from dqad.wording import fmt_value

    return fmt_value(value)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>dqad · {html.escape(title)}</title><style>{_CSS}</style></head><body><div class=wrap>"
        f"{body}</div></body></html>"
    )


def url_event(method: str, query: str, body: bytes) -> dict[str, Any]:
    """A Lambda function URL request (payload format 2.0): what the feedback function receives on AWS."""
    text = body.decode("utf-8", errors="replace") if body else None
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/feedback",
        "rawQueryString": query,
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "queryStringParameters": dict(parse_qsl(query, keep_blank_values=True)) or None,
        "requestContext": {"http": {"method": method, "path": "/feedback", "protocol": "HTTP/1.1",
                                    "sourceIp": HOST, "userAgent": "dqad serve"}},
        "body": text,
        "isBase64Encoded": False,
    }


def make_handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "dqad-serve"

        def log_message(self, format: str, *args: Any) -> None:  # one quiet line per request on stderr
            if self.server.verbose:  # type: ignore[attr-defined]
                super().log_message(format, *args)

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (headers or {}).items():
                if k.lower() not in ("content-type", "content-length", "cache-control"):
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _feedback(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = site.feedback(method, urlsplit(self.path).query, body)
            self._send(answer["statusCode"], answer["body"].encode(), answer["headers"]["Content-Type"],
                       answer["headers"])

        def do_POST(self) -> None:
            if urlsplit(self.path).path == "/feedback":
                self._feedback("POST")
            else:
                self._send(405, b"method not allowed", "text/plain")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            parts = [p for p in path.split("/") if p]
            html_type = "text/html; charset=utf-8"
            if path == "/feedback":
                self._feedback("GET")
            elif not parts:
                self._send(200, site.index().encode(), html_type)
            elif len(parts) == 3 and parts[0] == "runs":
                page = site.run_page(parts[1], parts[2])
                if page is None:
                    self._send(404, _page("not found", "<h1>No such run</h1><p><a href='/'>all runs</a></p>").encode(),
                               html_type)
                else:
                    self._send(200, page.encode(), html_type)
            elif len(parts) == 4 and parts[0] == "runs" and parts[3] == "report.html":
                report = site.state.run_dir(parts[1], parts[2]) / "report.html"
                if report.is_file() and report.resolve().is_relative_to(site.state.root.resolve()):
                    self._send(200, report.read_bytes(), html_type)
                else:
                    self._send(404, b"no report", "text/plain")
            else:
                self._send(404, _page("not found", "<h1>Not found</h1><p><a href='/'>all runs</a></p>").encode(),
                           html_type)

    return Handler


@contextmanager
def running_site(state: StateDir, port: int) -> Iterator[tuple[HTTPServer, Site]]:
    """The server bound on 127.0.0.1:``port`` (0: any free port) with its site; the caller serves it."""
    from dqad.bus import EventPublisher
    from dqad.settings import Settings
    from dqad.stage import Clients, StageRuntime
    from dqad_dev.errors import UserError
    from dqad_dev.local import LocalCloud

    if not state.root.is_dir():
        raise UserError(f"no local state at {state.root}: run `dqad run --datasets FILE` first, or pass --state DIR")
    with LocalCloud("dqad-serve") as cloud:  # the signing secret is read from Secrets Manager, as on AWS
        arn = cloud.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=state.feedback_secret())[
            "ARN"
        ]
        try:
            server = HTTPServer((HOST, port), BaseHTTPRequestHandler)
        except OSError as exc:
            raise UserError(f"cannot listen on {HOST}:{port}: {exc.strerror} (pass --port with a free port)") from None
        actual = server.server_address[1]
        from dqad_dev.feedback_cli import FolderStorage

        storage = FolderStorage(state.root)
        settings = Settings(
            bus_name=cloud.dep.names.bus,
            bucket=cloud.dep.bucket,
            datasets_uri=storage.uri("config/datasets.toml"),
            feedback_url=feedback_base_url(actual),
            feedback_secret_arn=arn,
        )
        clients = Clients()
        rt = StageRuntime("notifier", settings, storage, EventPublisher(clients("events"), "-", storage, "notifier"),
                          clients)
        site = Site(state, rt, feedback_base_url(actual))
        server.RequestHandlerClass = make_handler(site)
        server.verbose = False  # type: ignore[attr-defined]
        try:
            yield server, site
        finally:
            server.server_close()


def cmd_serve(args: argparse.Namespace) -> int:
    state = StateDir(Path(args.state))
    with running_site(state, args.port) as (server, _site):
        host, port = str(server.server_address[0]), int(server.server_address[1])
        print(f"dqad serve: http://{host}:{port}/  (state {state.root}; Ctrl-C to stop)", flush=True)
        if args.port != DEFAULT_PORT:
            print(f"  links printed by `dqad run` point at port {DEFAULT_PORT} unless it ran with --port {port}")
        server.verbose = args.verbose  # type: ignore[attr-defined]
        started = time.monotonic()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print(f"stopped after {time.monotonic() - started:.0f} s")
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local page (127.0.0.1) with the runs, their reports and feedback buttons",
        description=(
            "Serve the runs of a state folder on http://127.0.0.1:PORT/: each run's anomalies with the buttons "
            "'expected — not an anomaly' and 'confirmed incident' (signed links, answered by the same code as the "
            "feedback function on AWS) and its report. A recorded answer is used by the next `dqad run`."
        ),
    )
    p.add_argument("--state", default=DEFAULT_STATE, metavar="DIR", help="the state folder `dqad run` keeps")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (127.0.0.1 only)")
    p.add_argument("--verbose", action="store_true", help="log each request on stderr")
    p.set_defaults(func=cmd_serve)
