"""N = 100 loads across 20 datasets through the chain on ThreadedMotoServer, five stage workers at once.

The promise under load: every run ends in exactly one visible outcome (NotificationSent, or one
StageFailed), none is lost, and no run is mailed twice, while the five stages consume their queues
concurrently over real HTTP. See :func:`dqad_dev.loadtest.run_load`; ``bench/load.py`` runs N = 1,000.
"""

from __future__ import annotations

import pytest

from dqad_dev.loadtest import run_load

pytestmark = pytest.mark.slow


def test_a_hundred_loads_over_twenty_datasets_each_end_exactly_once(aws_env: None) -> None:
    report = run_load(100, datasets=20, tables=2, days=40, deadline_s=300)
    assert report.runs == 100 and report.datasets == 20
    assert report.lost == 0 and report.lost_runs == []
    assert report.ambiguous == 0
    assert report.notified + report.failed == 100
    assert report.failed == 0, "no fault was injected: every run should be scored"
    assert report.duplicate_emails == 0
    assert report.emails >= 20, "each dataset's final load carries an incident and must be mailed"
    assert report.trained_models == 1, "one champion serves every dataset"
    assert sum(report.dlq_messages.values()) == 0
    assert report.worker_errors == []


def test_the_benchmark_runs_moto_in_its_own_process_and_stops_it(aws_env: None) -> None:
    """``bench/load.py`` puts moto in a child process; the harness must reach it and stop it afterwards."""
    import boto3

    from dqad_dev.loadtest import moto_server

    with moto_server(own_process=True) as endpoint:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="dqad-own-process")
        s3.put_object(Bucket="dqad-own-process", Key="k", Body=b"v")
        assert s3.get_object(Bucket="dqad-own-process", Key="k")["Body"].read() == b"v"
    port = int(endpoint.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=1).close()
