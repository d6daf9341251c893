"""The operator docs list every metric the daemon exports."""

import re
from pathlib import Path

from streamlearn.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


def test_every_metric_is_documented_in_operations():
    documented = (ROOT / "docs" / "operations.md").read_text()
    names = {m.name for m in Metrics().registry.collect() if m.name.startswith("streamlearn_")}
    missing = [name for name in sorted(names)
               if not re.search(rf"`({re.escape(name)}|{re.escape(name[12:])})(_total)?[`{{]",
                                documented)]
    assert not missing, f"undocumented metrics: {missing}"
