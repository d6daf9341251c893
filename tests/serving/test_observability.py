"""Every metric the Grafana dashboard and the Prometheus alerts query is one a running
daemon exports: scraped over HTTP, not read from the code."""

from __future__ import annotations

import re

from tests.serving.conftest import Running
from tests.support.deployfiles import alert_rules, dashboard_exprs

METRIC = re.compile(r"\bstreamlearn_[a-z0-9_]+")
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def queried() -> dict[str, set[str]]:
    alerts = [rule["expr"] for rule in alert_rules()]
    return {
        "dashboard": {m for e in dashboard_exprs() for m in METRIC.findall(e)},
        "alerts": {m for e in alerts for m in METRIC.findall(e)},
    }


def exported(text: str) -> set[str]:
    """Series names a scrape can return: every sample name, and for each family declared
    (even one with no labelled child yet) the names its type gives."""
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(family)
        if kind == "histogram":
            names |= {family + suffix for suffix in HISTOGRAM_SERIES}
    return names


def test_dashboard_and_alerts_query_only_metrics_the_daemon_exports(served: Running) -> None:
    text = served.http.get("/metrics").text
    available = exported(text)
    for source, names in queried().items():
        assert names, f"no metric found in the {source}"
        missing = sorted(names - available)
        assert not missing, f"the {source} queries metrics no daemon exports: {missing}"
    # The scrape is the real one: it carries families that have no sample yet.
    assert "streamlearn_tta_resets_total" in available
