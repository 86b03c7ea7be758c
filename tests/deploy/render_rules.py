"""Prints the alert rules the chart's PrometheusRule carries for a release that runs only the
producer (what a Prometheus scraping only a producer should evaluate), as a rules file.

Usage: render_rules.py REPO RELEASE NAMESPACE
"""

import sys

import helm_python
import yaml

repo, release, namespace = sys.argv[1:4]
values = {
    "monitoring": {"prometheusRule": {"enabled": True}},
    "enricher": {"enabled": False},
    "insight": {"enabled": False},
}
result = helm_python.Config(namespace=namespace).install(
    f"{repo}/deploy/helm/woostream", release, values, dry_run="client"
)
manifest = result["manifest"] if isinstance(result, dict) else result.manifest
rule = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "PrometheusRule")
print(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
