"""``dqad serve`` in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium, which
`make test` installs when missing): open a run, click "expected — not an anomaly", confirm, and
the next ``dqad run`` reads the label (human feedback, and a retrain because of it)."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from dqad_dev.run import StateDir
from dqad_dev.serve import running_site

from .conftest import append_day

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")


def test_feedback_button_in_a_browser_reaches_the_next_run(example: Path, dqad) -> None:  # type: ignore[no-untyped-def]
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: `make test` installs it (apt-get install -y chromium)")
    day1 = dqad("run", "--datasets", "datasets.toml")
    assert day1.code == 0, day1.err
    run = day1.out.split("Run ", 1)[1].split(":", 1)[0]
    state = StateDir(example / "dqad-state")

    with running_site(state, 0) as (server, _site):
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            with playwright.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
                page = browser.new_page()
                page.goto(f"{base}/")
                page.click(f"text={run}")
                assert page.url == f"{base}/runs/shop_dq/{run}"
                row = page.locator("tr", has_text="crm.customers/null_pct")
                row.get_by_text("expected — not an anomaly").click()
                assert "Mark this point as: Expected — not an anomaly?" in page.text_content("h1")
                page.fill("textarea[name=note]", "planned migration")
                page.click("button[type=submit]")
                assert "Thank you — recorded as: expected — not an anomaly" in page.text_content("h1")
                page.goto(f"{base}/runs/shop_dq/{run}")
                assert "marked normal" in page.locator("tr", has_text="crm.customers/null_pct").inner_text()
                frame = page.frame_locator("iframe[title=report]")
                assert "anomaly in shop_dq" in frame.locator("h1").inner_text()
                browser.close()
        finally:
            server.shutdown()
            thread.join(timeout=10)

    labels = list((state.root / "labels" / "shop_dq").glob("*.json"))
    assert len(labels) == 1 and '"note": "planned migration"' in labels[0].read_text()
    append_day(example, "day2")
    nxt = dqad("run", "--datasets", "datasets.toml")
    assert nxt.code == 0
    assert "Model: trained a new model" in nxt.out  # the new human label: the champion is not reused
    labeled = pd.read_parquet(state.root / "runs" / "shop_dq" / nxt.out.split("Run ", 1)[1].split(":", 1)[0]
                              / "labeled.parquet")
    point = labeled[(labeled["series"] == "crm.customers/null_pct")
                    & (labeled["timestamp"] == pd.Timestamp("2026-11-30T03:01:30"))]
    assert point["label_source"].tolist() == ["human"] and point["label"].tolist() == [0]
