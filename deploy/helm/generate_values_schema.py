"""Writes the chart's values.schema.json: the chart's own values, and under `config` woostream's
configuration schema as the binary prints it (`woostream config schema`), so that `helm install`
refuses what woostream would refuse.

Usage: generate_values_schema.py WOOSTREAM_BINARY OUTPUT (make chart-schema)
"""

import json
import subprocess
import sys
obj = lambda props, req=None, extra=False, **kw: {"type": "object", "properties": props, "additionalProperties": extra, **({"required": req} if req else {}), **kw}
anyobj = {"type": "object"}
arr = lambda items=None, **kw: {"type": "array", **({"items": items} if items else {}), **kw}
string = {"type": "string"}
boolean = {"type": "boolean"}
posint = {"type": "integer", "minimum": 1}
nonneg = {"type": "integer", "minimum": 0}
quantity = {"type": ["string", "number"]}
dns_label = {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
             "description": "lowercase letters, digits and '-', at most 40: it names the sink's objects, consumer group and audit records"}
resources = obj({"requests": anyobj, "limits": anyobj, "claims": arr()})
probe = obj({k: nonneg for k in ["initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"]})
probes = obj({"readiness": probe, "liveness": probe, "startup": probe})
labels = {"type": "object", "additionalProperties": {"type": "string"}}
scheduling = {
    "priorityClassName": string, "affinity": anyobj, "topologySpreadConstraints": arr(anyobj),
    "nodeSelector": labels, "tolerations": arr(anyobj), "podLabels": labels, "podAnnotations": labels,
    "probes": probes, "existingSecret": string,
}
def role(props, **kw):
    return obj({**scheduling, "resources": resources, **props}, **kw)
hpa = obj({"enabled": boolean, "minReplicas": posint, "maxReplicas": posint, "targetCPUUtilization": {"type": "integer", "minimum": 1, "maximum": 100}})
schema = {
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "woostream chart values",
  "description": "Refuses what the chart cannot render correctly: unknown keys (a typo silently ignored is a production outage), wrong types, names Kubernetes would refuse.",
  "type": "object",
  "additionalProperties": False,
  "properties": {
    "global": anyobj,
    "image": obj({"repository": {"type": "string", "minLength": 1}, "tag": string,
                  "digest": {"type": "string", "pattern": "^$|^sha256:[0-9a-f]{64}$"},
                  "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}),
    "imagePullSecrets": arr(anyobj),
    "existingSecret": string,
    "secretReloader": obj({"enabled": boolean}),
    "kafkaTls": obj({"secretName": string,
                     "caSecret": obj({"name": string, "key": string}),
                     "clientSecret": obj({"name": string, "certKey": string, "keyKey": string})}),
    "commonLabels": labels, "podLabels": labels, "podAnnotations": labels,
    "serviceAccount": obj({"create": boolean, "name": string, "annotations": labels, "automountToken": boolean}),
    "priorityClassName": string, "affinity": anyobj, "topologySpreadConstraints": arr(anyobj),
    "extraEnv": arr(obj({"name": string, "value": string, "valueFrom": anyobj}, req=["name"])),
    "extraEnvFrom": arr(anyobj), "extraVolumes": arr(anyobj), "extraVolumeMounts": arr(anyobj),
    "probes": probes,
    "tests": obj({"enabled": boolean}),
    "checkConfigBeforeInstall": boolean,
    "config": {"$ref": "#/$defs/Config"},
    "podSecurityContext": anyobj, "securityContext": anyobj,
    "nodeSelector": labels, "tolerations": arr(anyobj),
    "producer": role({
        "enabled": boolean, "replicas": posint,
        "spool": obj({"size": quantity, "storageClassName": string,
                      "retentionPolicy": obj({"whenScaled": {"enum": ["Retain", "Delete"]}, "whenDeleted": {"enum": ["Retain", "Delete"]}}),
                      "drainOrdinals": arr(nonneg)}),
        "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "port": posint}),
        "ingress": obj({"enabled": boolean, "className": string, "host": string, "tlsSecretName": string, "annotations": labels}),
        "autoscaling": hpa,
        "podDisruptionBudget": obj({"minAvailable": nonneg, "maxUnavailable": posint}),
    }),
    "enricher": role({
        "enabled": boolean, "replicas": posint,
        "autoscaling": obj({
            "mode": {"enum": ["auto", "keda", "hpa", "off"], "description": "keda, hpa, auto or off (lowercase)"},
            "minReplicas": posint, "maxReplicas": posint, "scaleUpStabilizationSeconds": nonneg,
            "keda": obj({"lagThreshold": posint, "pollingInterval": posint, "cooldownPeriod": nonneg, "behavior": anyobj,
                         "triggerAuthentication": obj({"secretName": string, "keys": labels})}),
            "hpa": obj({"targetCPUUtilization": {"type": "integer", "minimum": 1, "maximum": 100}}),
        }),
    }),
    "slack": role({"workspaces": arr(obj({"name": dns_label, "slack": {"$ref": "#/$defs/SlackConfig"}}, req=["name", "slack"]))}),
    "crm": role({"accounts": arr(obj({"name": dns_label, "crm": {"$ref": "#/$defs/CrmConfig"},
                                      "inbound": obj({"enabled": boolean, "replicas": posint})}, req=["name", "crm"]))}),
    "rest": role({"enabled": boolean}),
    "insight": role({"enabled": boolean, "peers": arr(anyobj)}),
    "monitoring": obj({
        "serviceMonitor": obj({"enabled": boolean, "interval": string, "labels": labels}),
        "prometheusRule": obj({"enabled": boolean, "labels": labels, "seriesSelector": string, "runbookBaseUrl": string}),
        "dashboard": obj({"enabled": boolean, "labels": labels}),
    }),
    "networkPolicy": obj({"enabled": boolean, "monitoringNamespaceLabels": labels,
                          "kafkaPorts": arr(posint), "httpsPorts": arr(posint),
                          "kafkaPeers": arr(anyobj), "webhookPeers": arr(anyobj), "extraEgress": arr(anyobj)}),
    "fullnameOverride": {"type": "string", "pattern": "^$|^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
                         "description": "lowercase letters, digits and '-', at most 40"},
  },
}
config = json.loads(subprocess.run([sys.argv[1], "config", "schema"], check=True, capture_output=True, text=True).stdout)
defs = config.pop("$defs", {})
for key in ("$schema", "title"):
    config.pop(key, None)
config["description"] = "woostream's configuration: the keys of woostream.toml, as YAML (the chart sets ops.listen, producer.listen and producer.spool_dir)."
defs["Config"] = config
schema["$defs"] = dict(sorted(defs.items()))
with open(sys.argv[2], "w") as out:
    json.dump(schema, out, indent=2)
    out.write("\n")
