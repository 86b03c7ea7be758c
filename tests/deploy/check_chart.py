"""Checks the Helm chart as a platform team would meet it, without a cluster.

Renders deploy/helm/woostream with Helm's own Go SDK (helm-python-sdk, offline, client-side dry
run) with the default values and every example values file the chart ships (examples/), lints it,
validates every rendered object against Kubernetes' OpenAPI schemas (kubernetes-validate,
strict) and the KEDA and Prometheus-operator objects against their CRDs' schemas (kept under
tests/deploy/crds, unknown fields refused), and runs `woostream check-config` on every
configuration file the chart renders (hooks included: `helm test` and the check before
install). Also checks that the chart refuses every adversarial values file under
tests/deploy/refused (each with the message it names), that each pod gets only its role's
secrets, that the alert rules are scoped to their release, that every metric the alert rules
and the dashboard query is one woostream defines, and that every alert has a runbook and a
promtool test.

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


def render(values, name="woostream", hooks=True):
    """What `helm install` would create, with the hooks (which a dry-run install leaves out)."""
    release = helm_python.Config(namespace="shop").install(
        str(CHART), name, values, dry_run="client"
    )
    manifest = release["manifest"] if isinstance(release, dict) else release.manifest
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    if hooks:
        chart = helm_python.Chart.load(str(CHART))
        rendered = chart.render(values, name=name, namespace="shop")
        docs += [d for d in yaml.safe_load_all(rendered.get("woostream/templates/hooks.yaml", "")) if d]
    return docs


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
        if d["kind"] in ("StatefulSet", "Deployment", "Pod"):
            pod = d["spec"] if d["kind"] == "Pod" else d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                sc = c.get("securityContext", {})
                if not (sc.get("readOnlyRootFilesystem") and pod["securityContext"].get("runAsNonRoot")):
                    problems.append(f"{what}: not read-only and non-root")
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c and d["kind"] != "Pod":
                        problems.append(f"{what}: no {probe}")
                if "limits" not in c.get("resources", {}):
                    problems.append(f"{what}: no resource limits")
    return docs


# values.schema.json is generated: the chart's values, and woostream's configuration schema as
# this binary prints it. A configuration key added or changed without `make chart-schema`
# would be refused (or let through) by the chart but not by woostream.
with tempfile.TemporaryDirectory() as d:
    fresh = pathlib.Path(d) / "values.schema.json"
    subprocess.run([sys.executable, str(REPO / "deploy/helm/generate_values_schema.py"), WOOSTREAM, str(fresh)], check=True)
    if fresh.read_text() != (CHART / "values.schema.json").read_text():
        problems.append("deploy/helm/woostream/values.schema.json is not what `make chart-schema` generates from this build: run it and commit the file")

# The configuration schema accepts what woostream accepts: the example configuration.
import tomllib  # noqa: E402
values_schema = json.loads((CHART / "values.schema.json").read_text())
example = tomllib.loads((REPO / "deploy/woostream.example.toml").read_text())
config_schema = {**values_schema["$defs"]["Config"], "$defs": values_schema["$defs"]}
for e in jsonschema.Draft202012Validator(config_schema).iter_errors(example):
    problems.append(f"deploy/woostream.example.toml: refused by the configuration schema at {'.'.join(map(str, e.path))}: {e.message}")

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
for path in sorted((CHART / "examples").glob("*.yaml")):
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
    ({"slack": {"workspaces": [{"name": "Sales Team", "slack": {}}]}}, "does not match pattern"),
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
docs = render(yaml.safe_load((CHART / "examples/high-volume.yaml").read_text()))
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
platform = yaml.safe_load((CHART / "examples/high-volume.yaml").read_text())
before = checksums(platform)
changed = yaml.safe_load((CHART / "examples/high-volume.yaml").read_text())
changed["slack"]["workspaces"][0]["slack"]["rules"][0]["name"] = "bigger orders"
after = checksums(changed)
restarted = sorted(n for n in before if before[n] != after[n])
if restarted != ["woostream-slack-sales"]:
    problems.append(f"a Slack rule of one workspace restarts {restarted}, not only that workspace's sink")
else:
    print("a Slack rule changed restarts only woostream-slack-sales")
if files.get("woostream.yaml", {}).get("enricher", {}).get("static_membership") is not True:
    problems.append("the chart's enricher pods are not static members of their group")

# The Strimzi examples of docs/operations/kafka.md are valid KafkaTopic and KafkaUser objects.
strimzi = 0
for block in re.findall(r"```yaml\n(.*?)```", (REPO / "docs/operations/kafka.md").read_text(), re.S):
    d = yaml.safe_load(block)
    key = (d.get("apiVersion"), d.get("kind"))
    if key not in crds:
        problems.append(f"docs/operations/kafka.md: an example of {key}, which no CRD in tests/deploy/crds describes")
        continue
    for e in jsonschema.Draft7Validator(crds[key]).iter_errors(d):
        problems.append(f"docs/operations/kafka.md {d['kind']}: {'.'.join(map(str, e.path))}: {e.message}")
    strimzi += 1
print(f"docs/operations/kafka.md: {strimzi} Strimzi examples checked against the Strimzi CRDs")

# Every metric the alerts and the dashboard query is one woostream defines.
defined = set()
for source in REPO.glob("crates/*/src/**/*.rs"):
    defined.update(re.findall(r'"(woostream_[a-z0-9_]+)"', source.read_text()))
defined.update({"woostream_ready", "woostream_build_info"})  # written by the ops server itself
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

# Every alert: an absolute runbook_url to its own page, which exists, and a promtool test.
tested = (REPO / "tests/deploy/alerts_test.yaml").read_text()
names = sorted({r["alert"] for g in alerts["groups"] for r in g["rules"]})
for g in alerts["groups"]:
    for r in g["rules"]:
        url = r["annotations"].get("runbook_url", "")
        page = f"docs/runbooks/{r['alert']}.md"
        if not url.startswith("https://") or not url.endswith("/" + page) or not (REPO / page).is_file():
            problems.append(f"alerts.yaml {r['alert']}: runbook_url {url!r} is not an absolute link to {page}, or that page is missing")
for name in names:
    if f"alertname: {name}\n" not in tested:
        problems.append(f"alerts.yaml {name}: no promtool test in tests/deploy/alerts_test.yaml")
print(f"alerts: {len(names)} alerts, each with a runbook page and a promtool test")

# Two releases in one namespace: each release's rules read only its own series, and its
# absence rules only name roles it runs; the rendered rules are valid Prometheus rules.
def rule_docs(name, values):
    return next(d for d in render(values, name=name, hooks=False) if d["kind"] == "PrometheusRule")
monitoring = {"monitoring": {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}}
for release in ("shop-a", "shop-b"):
    rules = rule_docs(release, monitoring)
    for g in rules["spec"]["groups"]:
        for r in g["rules"]:
            expr = r["expr"]
            for m in re.finditer(r"\b(woostream_[a-z0-9_]+|up)\b(\{[^}]*\})?", expr):
                if f'app_kubernetes_io_instance="{release}"' not in (m.group(2) or ""):
                    problems.append(f"release {release}: {r['alert']} reads {m.group(0)} of any release")
            if r.get("labels", {}).get("role") in ("slack", "crm", "crm-inbound", "rest"):
                problems.append(f"release {release}: {r['alert']} for {r['labels']['role']}, a role it does not run")
            if not r["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{r['alert']}.md") or "/blob/v" not in r["annotations"]["runbook_url"]:
                problems.append(f"release {release}: {r['alert']} runbook_url not of this release: {r['annotations']['runbook_url']}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": rules["spec"]["groups"]}, f)
        f.flush()
        checked = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        if checked.returncode != 0:
            problems.append(f"release {release}: the rendered rules fail promtool: {checked.stdout}{checked.stderr}")
print("alert rules: scoped to each release's series, only its roles' absence rules, valid for promtool")

# Each pod gets only the secrets its role reads.
docs = render(yaml.safe_load((CHART / "examples/high-volume.yaml").read_text()))
def secret_keys(component):
    keys = set()
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment") and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component:
            for c in d["spec"]["template"]["spec"]["containers"]:
                keys |= {e["name"] for e in c.get("env", []) if "valueFrom" in e}
                if c.get("envFrom"):
                    problems.append(f"high-volume: {component} gets whole Secrets (envFrom): {c['envFrom']}")
    return keys
kafka = {"KAFKA_USERNAME", "KAFKA_PASSWORD", "SCHEMA_REGISTRY_PASSWORD"}
for component, expected in [
    ("producer", kafka | {"WOO_EU_SECRET", "WOO_US_SECRET", "WOO_EU_CONSUMER_KEY", "WOO_EU_CONSUMER_SECRET"}),
    ("enricher", kafka),
    ("insight", kafka),
    ("slack-sales", kafka | {"SLACK_SALES_TOKEN"}),
    ("slack-support", kafka | {"SLACK_SUPPORT_TOKEN"}),
    ("crm-hubspot", kafka | {"HUBSPOT_TOKEN", "HUBSPOT_CLIENT_SECRET"}),
]:
    got = secret_keys(component)
    if got != expected:
        problems.append(f"high-volume: {component} gets the secrets {sorted(got)}, expected {sorted(expected)}")
print("secrets: each role's pods get only the keys its configuration names for it")
# The schema registry's port is open in the NetworkPolicy.
policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "woostream")
ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
if 8081 not in ports:
    problems.append(f"high-volume: the NetworkPolicy does not let the pods reach the schema registry (:8081): {sorted(ports)}")

# The usual knobs reach every pod: scheduling, labels, annotations, extra env and volumes, a
# digest, Strimzi's two TLS Secrets; the producer is spread over zones by default.
knobs = {
    "image": {"digest": "sha256:" + "a" * 64},
    "commonLabels": {"team": "data"},
    "podLabels": {"cost-center": "shop"},
    "podAnnotations": {"example.com/scrape": "no"},
    "priorityClassName": "business-critical",
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["shop"]}]}]}}},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/woostream"}},
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    "extraEnvFrom": [{"configMapRef": {"name": "shop-proxy"}}],
    "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
    "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
    "kafkaTls": {"caSecret": {"name": "shop-kafka-cluster-ca-cert"}, "clientSecret": {"name": "woostream"}},
    "secretReloader": {"enabled": True},
    "probes": {"liveness": {"periodSeconds": 20}},
    "enricher": {"autoscaling": {"mode": "keda", "keda": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 900}}}}},
}
docs = check("usual knobs", knobs)
workloads = [d for d in docs or [] if d["kind"] in ("StatefulSet", "Deployment")]
if not workloads:
    problems.append("usual knobs: no workload rendered")
for d in workloads:
    what = f"usual knobs: {d['kind']}/{d['metadata']['name']}"
    t = d["spec"]["template"]
    pod = t["spec"]
    c = pod["containers"][0]
    checks = {
        "digest": c["image"] == "woostream@sha256:" + "a" * 64,
        "commonLabels": d["metadata"]["labels"].get("team") == "data" and t["metadata"]["labels"].get("team") == "data",
        "podLabels": t["metadata"]["labels"].get("cost-center") == "shop",
        "podAnnotations": t["metadata"]["annotations"].get("example.com/scrape") == "no",
        "reloader": "woostream-secrets" in t["metadata"]["annotations"].get("secret.reloader.stakater.com/reload", ""),
        "priorityClassName": pod.get("priorityClassName") == "business-critical",
        "affinity": "nodeAffinity" in pod.get("affinity", {}),
        "serviceAccount": pod.get("serviceAccountName") == "woostream",
        "extraEnv": any(e["name"] == "HTTPS_PROXY" for e in c.get("env", [])),
        "extraEnvFrom": c.get("envFrom") == [{"configMapRef": {"name": "shop-proxy"}}],
        "extraVolumes": any(v["name"] == "corp-ca" for v in pod["volumes"]) and any(m["name"] == "corp-ca" for m in c["volumeMounts"]),
        "strimzi": any(v["name"] == "kafka-tls" and len(v.get("projected", {}).get("sources", [])) == 2 for v in pod["volumes"]),
        "probes": c["livenessProbe"].get("periodSeconds") == 20 and c["readinessProbe"].get("periodSeconds") == 5,
    }
    if "producer" in d["metadata"]["name"]:
        spread = pod.get("topologySpreadConstraints", [])
        checks["zone spread"] = any(s["topologyKey"] == "topology.kubernetes.io/zone" and s["labelSelector"]["matchLabels"].get("app.kubernetes.io/component") == "producer" for s in spread)
    for knob, ok in checks.items():
        if not ok:
            problems.append(f"{what}: {knob} not applied")
scaled = next((d for d in docs or [] if d["kind"] == "ScaledObject"), None)
if not scaled or scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] != {"scaleDown": {"stabilizationWindowSeconds": 900}}:
    problems.append("usual knobs: enricher.autoscaling.keda.behavior not applied")
sa = [d for d in docs or [] if d["kind"] == "ServiceAccount"]
if len(sa) != 1 or sa[0]["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn") is None:
    problems.append(f"usual knobs: the ServiceAccount with its annotations is not rendered: {sa}")
print("usual knobs: applied to every workload")

# A single producer can still be drained: its PDB lets one go.
docs = render({"producer": {"autoscaling": {"enabled": False}, "replicas": 1}})
pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"].endswith("-producer"))
if pdb["spec"].get("maxUnavailable") != 1:
    problems.append(f"one producer: its PodDisruptionBudget blocks node drains: {pdb['spec']}")

# helm test and the check before install: a readiness test naming every role's Service and a
# check-config container per rendered file.
docs = render(yaml.safe_load((CHART / "examples/high-volume.yaml").read_text()))
hooks = {d["metadata"]["name"]: d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})}
ready = hooks.get("woostream-test-ready")
if not ready or len([a for a in ready["spec"]["containers"][0]["args"] if a.endswith("/readyz")]) != 8:
    problems.append(f"high-volume: helm test does not probe the 8 roles' /readyz: {ready and ready['spec']['containers'][0]['args']}")
for name, hook in [("woostream-test-config", "test"), ("woostream-check-config", "pre-install,pre-upgrade")]:
    pod = hooks.get(name)
    if not pod or pod["metadata"]["annotations"]["helm.sh/hook"] != hook:
        problems.append(f"high-volume: no {hook} hook {name}")
        continue
    files = sorted(c["args"][-1].rsplit("/", 1)[-1] for c in pod["spec"]["containers"])
    if files != ["crm-hubspot.yaml", "slack-sales.yaml", "slack-support.yaml", "woostream.yaml"]:
        problems.append(f"high-volume: {name} checks {files}")
print(f"hooks: {sorted(hooks)}")

# Adversarial values: each refused at render time, saying why.
for path in sorted((REPO / "tests/deploy/refused").glob("*.yaml")):
    text = path.read_text()
    expected = re.search(r"^# refused: (.+)$", text, re.M).group(1).strip()
    try:
        render(yaml.safe_load(text), name=re.search(r"^# release: (.+)$", text, re.M).group(1).strip() if "# release:" in text else "woostream")
        problems.append(f"refused/{path.name}: rendered, but must be refused ({expected})")
    except Exception as e:  # noqa: BLE001
        if expected not in str(e):
            problems.append(f"refused/{path.name}: refused without saying {expected!r}: {e}")
        else:
            print(f"refused as expected: {path.stem}: ...{expected}...")

# The chart, the image and the binary are one version.
chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
cargo = re.search(r'^\[workspace\.package\]\nversion = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
if not (chart_meta["version"] == chart_meta["appVersion"] == cargo):
    problems.append(f"versions differ: chart {chart_meta['version']}, appVersion {chart_meta['appVersion']}, crates {cargo}")
if f"## {cargo}" not in (REPO / "CHANGELOG.md").read_text() and "## Unreleased" not in (REPO / "CHANGELOG.md").read_text():
    problems.append(f"CHANGELOG.md has no section for {cargo}")

print(f"woostream check-config accepted {len(checked_configs)} rendered configurations")
print(f"alerts and dashboard: {len(exprs)} queries over {len(queried)} metrics, all exported")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("chart OK")
