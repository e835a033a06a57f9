"""Feedback from the alert: signed links through the function URL entry point, and the
``dqad feedback`` command; both write ``labels/<dataset>/`` and the next labeler run obeys them."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qsl, urlencode, urlparse

import numpy as np
import pandas as pd
import pytest

from dqad import signing
from dqad.bus import envelope
from dqad.contract import DatasetFetched, TimeWindow
from dqad.feedback import read_labels
from dqad.signing import feedback_link, make_claim, parse_secret
from dqad_dev.cli import main as dqad_main
from dqad_notifier.handler import feedback_handler

SECRET = "s3cr3t-for-tests-" + "x" * 24
BASE_URL = "https://abc123.lambda-url.us-east-1.on.aws/"
SERIES = "sales.orders/row_count"
POINT = "2026-10-20T02:16:07"


def url_event(method: str, url: str, form: dict[str, str] | None = None, b64: bool = False) -> dict:
    """A Lambda function URL request (payload format 2.0) for ``url``."""
    query = dict(parse_qsl(urlparse(url).query))
    body = urlencode(form) if form is not None else None
    if body is not None and b64:
        body = base64.b64encode(body.encode()).decode()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": urlparse(url).query,
        "headers": {"host": "abc123.lambda-url.us-east-1.on.aws", "content-type": "application/x-www-form-urlencoded"},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "t",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1793606400000,
        },
        "body": body,
        "isBase64Encoded": b64,
    }


@pytest.fixture
def feedback_env(notifier, cloud, monkeypatch):
    arn = cloud.client("secretsmanager").create_secret(Name="dqad-feedback", SecretString=SECRET)["ARN"]
    monkeypatch.setenv("DQAD_FEEDBACK_SECRET_ARN", arn)
    monkeypatch.setenv("DQAD_FEEDBACK_URL", BASE_URL)
    notifier.configure()
    return notifier


def link(label: str = "normal", ttl_s: float = 3600, series: str = SERIES, now: float | None = None) -> str:
    claim = make_claim("shop_dq", series, POINT, label, "run-a", ttl_s, now=now)
    return feedback_link(BASE_URL, parse_secret(SECRET), claim)


def labels(notifier) -> pd.DataFrame:
    return read_labels(notifier.storage, "shop_dq")


def test_signed_link_shows_confirmation_then_records_on_post(feedback_env) -> None:
    url = link("normal")
    page = feedback_handler(url_event("GET", url))
    assert page["statusCode"] == 200
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert page["headers"]["Referrer-Policy"] == "no-referrer"
    assert "Expected — not an anomaly?" in page["body"] and "<form method=post>" in page["body"]
    assert labels(feedback_env).empty  # a GET (e.g. a mail scanner) records nothing

    form = dict(parse_qsl(urlparse(url).query)) | {"note": "planned purge"}
    done = feedback_handler(url_event("POST", url, form, b64=True))
    assert done["statusCode"] == 200
    assert "recorded as: expected — not an anomaly" in done["body"]
    [row] = labels(feedback_env).to_dict("records")
    assert (row["series"], row["timestamp"], row["label"], row["note"]) == (
        SERIES,
        pd.Timestamp(POINT),
        "normal",
        "planned purge",
    )
    assert row["by"] == "email link (run-a)"


def test_a_link_records_once_and_a_second_use_says_so(feedback_env) -> None:
    url = link("anomaly")
    query = dict(parse_qsl(urlparse(url).query))
    assert feedback_handler(url_event("POST", url, query | {"note": "first"}))["statusCode"] == 200
    again = feedback_handler(url_event("POST", url, query | {"note": "second"}))
    assert again["statusCode"] == 409 and "This link was already used" in again["body"]
    [row] = labels(feedback_env).to_dict("records")
    assert row["note"] == "first"  # the second use changed nothing
    # the other verdict's link is another link: it still records (the latest answer wins)
    other = link("normal")
    assert feedback_handler(url_event("POST", other, dict(parse_qsl(urlparse(other).query))))["statusCode"] == 200
    [row] = labels(feedback_env).to_dict("records")
    assert row["label"] == "normal"


def test_the_email_links_work_end_to_end(feedback_env) -> None:
    """The link in a real digest, clicked and confirmed, records the verdict."""
    feedback_env.deliver(feedback_env.scored("run-a", feedback_env.incident_scores()))
    [msg] = feedback_env.inbox()
    url = next(line.split(": ", 1)[1] for line in msg["Message"].splitlines() if "Confirmed incident:" in line)
    form = dict(parse_qsl(urlparse(url).query))
    assert feedback_handler(url_event("POST", url, form))["statusCode"] == 200
    [row] = labels(feedback_env).to_dict("records")
    assert (row["series"], row["label"], row["timestamp"]) == (SERIES, "anomaly", feedback_env.t0)


@pytest.mark.parametrize(
    ("tamper", "method"),
    [
        (lambda q: q | {"l": "anomaly"}, "GET"),  # altered verdict
        (lambda q: q | {"s": "sales.orders/sum_amount"}, "POST"),  # altered point
        (lambda q: q | {"e": str(int(q["e"]) + 86400)}, "POST"),  # extended expiry
        (lambda q: q | {"sig": "A" * 43}, "POST"),  # forged signature
        (lambda q: {k: v for k, v in q.items() if k != "sig"}, "GET"),  # unsigned
    ],
    ids=["altered-label", "altered-series", "extended-expiry", "forged-signature", "unsigned"],
)
def test_forged_or_altered_links_are_refused(feedback_env, tamper, method) -> None:
    query = tamper(dict(parse_qsl(urlparse(link()).query)))
    url = f"{BASE_URL}?{urlencode(query)}"
    resp = feedback_handler(url_event(method, url, query if method == "POST" else None))
    assert resp["statusCode"] == 403
    assert "This link cannot be used" in resp["body"]
    assert "altered or not issued by dqad" in resp["body"] or "incomplete" in resp["body"]
    assert labels(feedback_env).empty


def test_link_signed_with_another_secret_is_refused(feedback_env) -> None:
    claim = make_claim("shop_dq", SERIES, POINT, "normal", "run-a", 3600)
    url = feedback_link(BASE_URL, [b"another-secret-of-32-bytes......"], claim)
    resp = feedback_handler(url_event("POST", url, dict(parse_qsl(urlparse(url).query))))
    assert resp["statusCode"] == 403 and labels(feedback_env).empty


def test_expired_link_is_refused_with_a_clear_message(feedback_env) -> None:
    url = link(ttl_s=3600, now=time.time() - 7200)  # issued two hours ago, valid one hour
    for method in ("GET", "POST"):
        resp = feedback_handler(url_event(method, url, dict(parse_qsl(urlparse(url).query))))
        assert resp["statusCode"] == 403
        assert "This link expired on" in resp["body"] and "dqad feedback" in resp["body"]
    assert labels(feedback_env).empty


def test_other_methods_are_not_allowed(feedback_env) -> None:
    assert feedback_handler(url_event("DELETE", link()))["statusCode"] == 405


# -- the next labeler run obeys the feedback ------------------------------------------------------
def _history(days: int = 70) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ts = pd.date_range("2026-08-20 02:16:07", periods=days, freq="D")
    frames = []
    for series, level in ((SERIES, 3_000_000.0), ("sales.orders/sum_amount", 48e6)):
        values = level * (1 + rng.normal(0, 0.01, days))
        frames.append(pd.DataFrame({"series": series, "group": "sales.orders", "timestamp": ts, "value": values}))
    history = pd.concat(frames, ignore_index=True)
    spike = (history["series"] == SERIES) & (history["timestamp"] == pd.Timestamp(POINT))
    history.loc[spike, "value"] = 0.0  # an empty load the rules label an anomaly... unless told otherwise
    return history


def _run_labeler(notifier, run_id: str) -> pd.DataFrame:
    st = notifier.storage
    prefix = st.uri(f"runs/shop_dq/{run_id}")
    history = _history()
    h = st.write_parquet(f"{prefix}/history.parquet", history)
    new = st.write_parquet(f"{prefix}/new.parquet", history.tail(2))
    end = pd.Timestamp(history["timestamp"].max(), tz="UTC")
    detail = DatasetFetched(
        run_id=run_id,
        dataset="shop_dq",
        history=h,
        new=new,
        window=TimeWindow(history_start=end - pd.Timedelta(days=80), new_start=end, new_end=end),
        load_log_id="log-1",
    )
    sqs = notifier.cloud.client("sqs")
    sqs.send_message(
        QueueUrl=notifier.cloud.dep.queue_urls["labeler"], MessageBody=json.dumps(envelope(detail, "dqad.fetcher"))
    )
    report = notifier.cloud.pump(only=("labeler",))
    assert not report.failures.get("labeler"), notifier.cloud.dead_letters("labeler")
    assert not notifier.cloud.dead_letters("labeler"), notifier.cloud.dead_letters("labeler")
    return st.read_parquet(f"{prefix}/labeled.parquet")


def _point(labeled: pd.DataFrame) -> dict:
    row = labeled[(labeled["series"] == SERIES) & (labeled["timestamp"] == pd.Timestamp(POINT))]
    return row[["label", "label_source"]].iloc[0].to_dict()


def test_cli_feedback_on_aws_is_used_by_the_next_labeler_run(notifier, capsys) -> None:
    before = _point(_run_labeler(notifier, "run-before"))
    assert before["label"] == 1 and before["label_source"] != "human"  # the empty load, labelled by the rules

    code = dqad_main(
        [
            "feedback",
            "--aws",
            "--dataset",
            "shop_dq",
            "--series",
            SERIES,
            "--timestamp",
            POINT,
            "--label",
            "normal",
            "--note",
            "planned purge",
        ]
    )
    assert code == 0 and "recorded sales.orders/row_count at 2026-10-20T02:16:07 as normal" in capsys.readouterr().out

    after = _point(_run_labeler(notifier, "run-after"))
    assert after == {"label": 0, "label_source": "human"}


def test_cli_feedback_on_local_state_folder(tmp_path, notifier, capsys) -> None:
    """``dqad demo`` leaves a bucket mirror; the label lands where ``dqad replay`` will import it.
    No run fetched the point in this mirror, so the label needs ``--force``."""
    notifier.cloud.export_bucket(tmp_path)
    argv = ["feedback", "--state", str(tmp_path), "--dataset", "shop_dq", "--series", SERIES, "--timestamp", POINT,
            "--label", "anomaly"]
    assert dqad_main(argv) == 2
    assert "no run of dataset 'shop_dq' here yet" in capsys.readouterr().err
    assert dqad_main([*argv, "--force"]) == 0
    [path] = (tmp_path / "labels" / "shop_dq").iterdir()
    assert json.loads(path.read_text())["label"] == "anomaly"
    unknown = ["feedback", "--state", str(tmp_path), "--dataset", "nope", "--series", "x", "--timestamp", POINT,
               "--label", "normal"]
    assert dqad_main(unknown) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_secret_is_cached_per_container(feedback_env, cloud) -> None:
    signing._key_cache.clear()
    assert feedback_handler(url_event("GET", link()))["statusCode"] == 200
    cloud.client("secretsmanager").update_secret(SecretId="dqad-feedback", SecretString="rotated-" + "y" * 32)
    assert feedback_handler(url_event("GET", link()))["statusCode"] == 200  # cached keys still verify
