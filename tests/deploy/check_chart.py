"""Checks the Helm chart as a platform team would meet it, without a cluster.

Renders deploy/helm/woostream with Helm's own Go SDK (helm-python-sdk, offline, client-side dry
run) with the default values and every values file under tests/deploy/values, lints it,
validates every rendered object against Kubernetes' OpenAPI schemas (kubernetes-validate,
strict) and the KEDA and Prometheus-operator objects against their CRDs' schemas (kept under
tests/deploy/crds, unknown fields refused), and runs `woostream check-config` on every
configuration file the chart renders. Also checks that the chart refuses an enricher scaled
above its partition count, and that every metric the alert rules and the dashboard query is
one woostream defines.

Usage: check_chart.py REPO WOOSTREAM_BINARY. Prints what each values file renders (kinds and
counts); exits non-zero with every problem found.
"""

import collections
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import helm_python
import jsonschema
import kubernetes_validate
import yaml

REPO = pathlib.Path(sys.argv[1])
WOOSTREAM = sys.argv[2]
CHART = REPO / "deploy/helm/woostream"
CRDS = REPO / "tests/deploy/crds"
problems = []


def render(values, name="woostream"):
    release = helm_python.Config(namespace="shop").install(
        str(CHART), name, values, dry_run="client"
    )
    manifest = release["manifest"] if isinstance(release, dict) else release.manifest
    return [d for d in yaml.safe_load_all(manifest) if d]


def strict(schema):
    """A CRD schema that refuses unknown fields, as `kubectl apply --validate=strict` does."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            schema.pop("type", None)
            schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


crds = {}
for path in CRDS.glob("*.json"):
    crd = json.loads(path.read_text())
    crds[(f"{crd['group']}/{crd['version']}", crd["kind"])] = strict(crd["schema"])


def env_names(value):
    """The environment variables a configuration reads its secrets from."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "env" and isinstance(v, str):
                yield v
            elif k.endswith("_env") and isinstance(v, str):
                yield v
            else:
                yield from env_names(v)
    elif isinstance(value, list):
        for v in value:
            yield from env_names(v)


checked_configs = []


def check_config(label, filename, text):
    checked_configs.append(f"{label}/{filename}")
    config = yaml.safe_load(text)
    env = dict(os.environ)
    # What the existing Secret gives the pod: a realistic value for every variable named.
    for name in env_names(config):
        env[name] = f"value-of-{name.lower()}-7f3a9c"
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / filename
        path.write_text(text)
        # Files the pod mounts (the Kafka CA) exist there, not here: point them at a file.
        stand_in = pathlib.Path(d) / "mounted-file"
        stand_in.write_text("-----BEGIN CERTIFICATE-----\n")
        text = re.sub(r"/etc/woostream-kafka-tls/[\w.]+", str(stand_in), text)
        path.write_text(text)
        run = subprocess.run(
            [WOOSTREAM, "check-config", "--config", str(path)],
            env=env,
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        problems.append(f"{label}: woostream check-config refuses {filename}: {run.stderr.strip()}")


def check(label, values):
    try:
        docs = render(values)
    except Exception as e:  # noqa: BLE001 - report every failure
        problems.append(f"{label}: rendering failed: {e}")
        return
    kinds = collections.Counter(d["kind"] for d in docs)
    print(f"{label}: {len(docs)} objects: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    for d in docs:
        what = f"{label}: {d['kind']}/{d['metadata']['name']}"
        key = (d["apiVersion"], d["kind"])
        if key in crds:
            errors = sorted(
                jsonschema.Draft7Validator(crds[key]).iter_errors(d), key=lambda e: e.path
            )
            for e in errors:
                problems.append(f"{what}: {'.'.join(map(str, e.path))}: {e.message}")
        else:
            try:
                kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"):
            json.loads(d["data"]["woostream.json"])
        elif d["kind"] == "ConfigMap":
            for filename, text in d["data"].items():
                check_config(label, filename, text)
        if d["kind"] in ("StatefulSet", "Deployment"):
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                sc = c.get("securityContext", {})
                if not (sc.get("readOnlyRootFilesystem") and pod["securityContext"].get("runAsNonRoot")):
                    problems.append(f"{what}: not read-only and non-root")
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{what}: no {probe}")
                if "limits" not in c.get("resources", {}):
                    problems.append(f"{what}: no resource limits")
    return docs


lint = helm_python.lint(str(CHART), strict=True)
for m in lint.get("messages", []):
    # Severity 1 is informational (e.g. "icon is recommended").
    if m["severity"] > 1:
        problems.append(f"helm lint: {m['path']}: {m['error']}")
for e in lint.get("errors", []) or []:
    problems.append(f"helm lint: {e}")

defaults = check("default values", {})
if defaults and "NetworkPolicy" not in {d["kind"] for d in defaults}:
    problems.append("default values: no NetworkPolicy rendered (it is on by default)")
for path in sorted((REPO / "tests/deploy/values").glob("*.yaml")):
    docs = check(path.stem, yaml.safe_load(path.read_text()))
    if path.stem == "high-volume" and docs:
        kinds = {d["kind"] for d in docs}
        for k in ("ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule", "NetworkPolicy"):
            if k not in kinds:
                problems.append(f"high-volume: no {k} rendered")
        shared = next(d for d in docs if d["kind"] == "ConfigMap" and "woostream.yaml" in d["data"])
        config = yaml.safe_load(shared["data"]["woostream.yaml"])
        if "schema_registry" not in config:
            problems.append("high-volume: the platform values do not use the registry framing")
        # KEDA reads the lag of the group and topics woostream uses: in the namespace.
        scaled = next(d for d in docs if d["kind"] == "ScaledObject")
        for t in scaled["spec"]["triggers"]:
            m = t["metadata"]
            if m["consumerGroup"] != "shop-prod.woostream-enricher" or not m["topic"].startswith("shop-prod.woo."):
                problems.append(f"high-volume: KEDA reads {m['consumerGroup']} on {m['topic']}, not the namespaced group and topic")

# An enricher allowed more pods than partitions would leave the extra pods idle: refused.
try:
    render({"enricher": {"autoscaling": {"mode": "keda", "maxReplicas": 7}}})
    problems.append("an enricher scaled to 7 pods over 6 partitions was rendered")
except Exception as e:  # noqa: BLE001
    if "partition count" not in str(e):
        problems.append(f"the partition-count refusal does not say why: {e}")
    else:
        print("refused as expected: enricher.autoscaling.maxReplicas 7 over 6 partitions")

# The guard reads the orders topic's own partition count when it has one.
try:
    render({"config": {"topics": {"partitions": 12, "orders": {"name": "woo.orders", "partitions": 6}, "customers": {"name": "woo.customers", "partitions": 6}}}, "enricher": {"autoscaling": {"mode": "keda", "maxReplicas": 8}}})
    problems.append("an enricher scaled to 8 pods over an orders topic of 6 partitions was rendered")
except Exception as e:  # noqa: BLE001
    if "orders.partitions" not in str(e):
        problems.append(f"the per-topic partition-count refusal does not say why: {e}")
    else:
        print("refused as expected: 8 enrichers over an orders topic of 6 partitions (topics.partitions 12)")

# Two sinks with one name would share offsets and audit records; a name that is not a DNS
# label breaks object names: both refused at render time.
for values, why in [
    ({"slack": {"workspaces": [{"name": "sales", "slack": {}}, {"name": "sales", "slack": {}}]}}, "named twice"),
    ({"slack": {"workspaces": [{"name": "Sales Team", "slack": {}}]}}, "lowercase letters"),
]:
    try:
        render(values)
        problems.append(f"rendered sinks that must be refused ({why}): {values}")
    except Exception as e:  # noqa: BLE001
        if why not in str(e):
            problems.append(f"the refusal of {values} does not say why: {e}")
        else:
            print(f"refused as expected: {why}")
# Each sink's configuration names it: its consumer group and audit records are its own.
docs = render(yaml.safe_load((REPO / "tests/deploy/values/high-volume.yaml").read_text()))
files = {k: yaml.safe_load(v) for d in docs if d["kind"] == "ConfigMap" for k, v in d.get("data", {}).items() if k.endswith(".yaml")}
for filename, section, key, name in [("slack-sales.yaml", "slack", "workspace", "sales"), ("slack-support.yaml", "slack", "workspace", "support"), ("crm-hubspot.yaml", "crm", "account", "hubspot")]:
    if files.get(filename, {}).get(section, {}).get(key) != name:
        problems.append(f"high-volume: {filename} does not name its sink {name!r} ({section}.{key})")

# A Slack rule changed restarts that workspace's sink only: each pod's checksum is of the one
# file it reads. Enricher pods are static members of their group.
def checksums(values):
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in render(values)
        if d["kind"] in ("StatefulSet", "Deployment")
    }
platform = yaml.safe_load((REPO / "tests/deploy/values/high-volume.yaml").read_text())
before = checksums(platform)
changed = yaml.safe_load((REPO / "tests/deploy/values/high-volume.yaml").read_text())
changed["slack"]["workspaces"][0]["slack"]["rules"][0]["name"] = "bigger orders"
after = checksums(changed)
restarted = sorted(n for n in before if before[n] != after[n])
if restarted != ["woostream-slack-sales"]:
    problems.append(f"a Slack rule of one workspace restarts {restarted}, not only that workspace's sink")
else:
    print("a Slack rule changed restarts only woostream-slack-sales")
if files.get("woostream.yaml", {}).get("enricher", {}).get("static_membership") is not True:
    problems.append("the chart's enricher pods are not static members of their group")

# The Strimzi examples of docs/kafka.md are valid KafkaTopic and KafkaUser objects.
strimzi = 0
for block in re.findall(r"```yaml\n(.*?)```", (REPO / "docs/kafka.md").read_text(), re.S):
    d = yaml.safe_load(block)
    key = (d.get("apiVersion"), d.get("kind"))
    if key not in crds:
        problems.append(f"docs/kafka.md: an example of {key}, which no CRD in tests/deploy/crds describes")
        continue
    for e in jsonschema.Draft7Validator(crds[key]).iter_errors(d):
        problems.append(f"docs/kafka.md {d['kind']}: {'.'.join(map(str, e.path))}: {e.message}")
    strimzi += 1
print(f"docs/kafka.md: {strimzi} Strimzi examples checked against the Strimzi CRDs")

# Every metric the alerts and the dashboard query is one woostream defines.
defined = set()
for source in REPO.glob("crates/*/src/**/*.rs"):
    defined.update(re.findall(r'"(woostream_[a-z0-9_]+)"', source.read_text()))
defined.add("woostream_ready")  # written by the ops server itself
alerts = yaml.safe_load((CHART / "files/alerts.yaml").read_text())
exprs = [("alerts.yaml " + r["alert"], r["expr"]) for g in alerts["groups"] for r in g["rules"]]
dashboard = json.loads((CHART / "files/dashboard.json").read_text())
for panel in dashboard["panels"]:
    for t in panel.get("targets", []):
        exprs.append((f"dashboard '{panel['title']}'", t["expr"]))
for variable in dashboard["templating"]["list"]:
    if "query" in variable and "woostream_" in str(variable["query"]):
        exprs.append((f"dashboard variable {variable['name']}", str(variable["query"])))
queried = set()
for where, expr in exprs:
    for name in re.findall(r"\b(woostream_[a-z0-9_]+)", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        queried.add(base)
        if base not in defined:
            problems.append(f"{where} queries {name}, which woostream does not export")
print(f"woostream check-config accepted {len(checked_configs)} rendered configurations")
print(f"alerts and dashboard: {len(exprs)} queries over {len(queried)} metrics, all exported")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("chart OK")
