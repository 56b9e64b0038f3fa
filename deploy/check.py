#!/usr/bin/env python3
"""Checks deploy/ without a cluster, a Docker engine or Grafana.

- Every manifest parses; the production overlay is rendered (its patches
  applied to the base) and both are checked.
- Core Kubernetes objects validate against the Kubernetes schema
  (kubernetes-validate, strict: unknown fields are errors).
- KEDA objects have the fields its RabbitMQ scaler reads, and name what
  exists: the worker Deployment, the TriggerAuthentication, the Secret key,
  the jobs queue of the configured namespace, one replica per `concurrency`
  messages, `protocol: http` (unacked counts).
- Every SYNCWAY_* name used is a setting README documents; ports, probe
  paths, commands and grace periods match the binaries.
- Every metric the alert rules and the dashboard query is one the binaries
  serve (samples written by tests/it/operations.rs to
  $SYNCWAY_METRICS_SAMPLE_DIR).
- The compose file's monitoring profile mounts files that exist.

Run by scripts/check-deploy (in CI after the tests).
"""

import copy
import json
import os
import pathlib
import re
import sys

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"
ROUTES = {"/healthz", "/readyz"}
KEDA_RABBITMQ_KEYS = {"host", "protocol", "queueName", "mode", "value",
                      "activationValue", "vhostName", "useRegex", "excludeUnacknowledged"}

errors = []


def fail(message):
    errors.append(message)


def load_all(path):
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def base_objects():
    base = DEPLOY / "kubernetes" / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    objects = []
    for resource in kustomization["resources"]:
        objects.extend(load_all(base / resource))
    for name in sorted(p.name for p in base.glob("*.yaml")):
        if name != "kustomization.yaml" and name not in kustomization["resources"]:
            fail(f"base/{name} is not listed in the kustomization")
    return objects


def pointer(document, path):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.strip("/").split("/")]
    for part in parts[:-1]:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document, parts[-1]


def overlay(objects, name):
    directory = DEPLOY / "kubernetes" / "overlays" / name
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if kustomization.get("resources") != ["../../base"]:
        fail(f"overlay {name}: resources must be ../../base")
    rendered = copy.deepcopy(objects)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matches = [o for o in rendered if o["kind"] == target["kind"]
                   and o["metadata"]["name"] == target["name"]]
        if len(matches) != 1:
            fail(f"overlay {name}: patch target {target} matches {len(matches)} objects")
            continue
        for operation in yaml.safe_load(patch["patch"]):
            if operation["op"] != "replace":
                fail(f"overlay {name}: only replace is checked, not {operation['op']}")
                continue
            parent, key = pointer(matches[0], operation["path"])
            if isinstance(parent, list):
                key = int(key)
            elif key not in parent:
                fail(f"overlay {name}: {operation['path']} does not exist")
                continue
            parent[key] = operation["value"]
    for image in kustomization.get("images", []):
        for obj in rendered:
            for container in containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image['name']}:{image['newTag']}"
    for obj in rendered:
        obj["metadata"]["namespace"] = kustomization.get("namespace", "default")
    return rendered


def containers(obj):
    spec = obj.get("spec", {})
    template = spec.get("template", {}).get("spec", {})
    return template.get("containers", [])


def documented_settings():
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `(SYNCWAY_[A-Z0-9_]+)`", readme, re.M))


def find(objects, kind, name):
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    fail(f"no {kind} {name}")
    return None


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


MEBI = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def quantity(text):
    for suffix, factor in MEBI.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


def check_memory(label, container, values):
    """The worker's memory budget (by default half its memory limit) holds a
    batch read (4x MAX_BATCH_BYTES) for every job it runs at once."""
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if not limit:
        fail(f"{label}: the worker has no memory limit (its memory budget comes from it)")
        return
    budget = int(values.get("SYNCWAY_WORKER__MEMORY_BUDGET_BYTES", quantity(limit) // 2))
    if budget > quantity(limit) // 2:
        fail(f"{label}: the worker's memory budget {budget} is over half its limit {limit}")
    concurrency = int(values.get("SYNCWAY_WORKER__CONCURRENCY", 4))
    batch = int(values.get("SYNCWAY_CONNECTORS__MAX_BATCH_BYTES", 8 << 20))
    if budget < concurrency * 4 * batch:
        fail(f"{label}: a memory budget of {budget} holds fewer than {concurrency} batch reads of {batch} bytes")


def check(objects, label):
    settings = documented_settings()
    config = find(objects, "ConfigMap", "syncway-config") or {"data": {}}
    secret = find(objects, "Secret", "syncway-secrets") or {"stringData": {}}
    values = {**config["data"], **secret.get("stringData", {})}
    for name in list(config["data"]) + list(secret.get("stringData", {})):
        if name.startswith("SYNCWAY_") and name not in settings:
            fail(f"{label}: {name} is not a setting README documents")
    for obj in objects:
        kind = obj["kind"]
        if obj["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            fail(f"{label}: {kind} {obj['metadata']['name']}: {error.message}")
        for container in containers(obj):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for name in env:
                if name.startswith("SYNCWAY_") and name not in settings:
                    fail(f"{label}: {name} is not a setting README documents")
            command = container.get("command", [])
            if command[:1] not in (["syncway-api"], ["syncway-worker"]):
                fail(f"{label}: {obj['metadata']['name']} runs {command}")
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            merged = {**values, **env}
            if command == ["syncway-api"]:
                if ports.get("http") != port_of(merged.get("SYNCWAY_API__LISTEN", ":8080")):
                    fail(f"{label}: the API's http port is not SYNCWAY_API__LISTEN's")
                if ports.get("metrics") != port_of(merged.get("SYNCWAY_METRICS__LISTEN", ":9090")):
                    fail(f"{label}: the API's metrics port is not SYNCWAY_METRICS__LISTEN's")
            if command == ["syncway-worker"]:
                if ports.get("metrics") != port_of(merged.get("SYNCWAY_METRICS__LISTEN", ":9091")):
                    fail(f"{label}: the worker's metrics port is not SYNCWAY_METRICS__LISTEN's")
                grace = obj["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
                worker_grace = int(values.get("SYNCWAY_WORKER__SHUTDOWN_GRACE_SECONDS", 25))
                if grace <= worker_grace + 5:
                    fail(f"{label}: terminationGracePeriodSeconds {grace} is not above the worker's grace {worker_grace} (+5 s)")
                if "preStop" not in container.get("lifecycle", {}):
                    fail(f"{label}: the worker has no preStop hook")
                check_memory(label, container, merged)
            if command == ["syncway-api", "migrate"] and kind != "Job":
                fail(f"{label}: migrations run in a Job")
            for probe in ("readinessProbe", "livenessProbe"):
                if command[:1] == ["syncway-api"] and kind == "Job":
                    continue
                http = container.get(probe, {}).get("httpGet")
                if not http:
                    fail(f"{label}: {obj['metadata']['name']} has no {probe}")
                    continue
                if http["path"] not in ROUTES:
                    fail(f"{label}: {probe} path {http['path']} is not one of {sorted(ROUTES)}")
                if http["port"] not in ports:
                    fail(f"{label}: {probe} port {http['port']} is not a container port")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                if ref["name"] not in ("syncway-config", "syncway-secrets"):
                    fail(f"{label}: envFrom names {ref['name']}")
    # KEDA: what the RabbitMQ scaler reads.
    scaled = find(objects, "ScaledObject", "syncway-worker")
    if scaled:
        target = scaled["spec"]["scaleTargetRef"]["name"]
        find(objects, "Deployment", target)
        namespace = config["data"].get("SYNCWAY_AMQP__NAMESPACE", "syncway")
        wanted = {f"{namespace}.sync_jobs", f"{namespace}.sync_jobs.manual"}
        triggers = scaled["spec"]["triggers"]
        queues = {t.get("metadata", {}).get("queueName") for t in triggers}
        if queues != wanted or len(triggers) != len(wanted):
            fail(f"{label}: the scaler's queues {sorted(map(str, queues))} are not {sorted(wanted)}")
        for trigger in triggers:
            metadata = trigger["metadata"]
            unknown = set(metadata) - KEDA_RABBITMQ_KEYS
            if unknown:
                fail(f"{label}: unknown rabbitmq scaler fields {sorted(unknown)}")
            if trigger["type"] != "rabbitmq" or metadata.get("protocol") != "http":
                fail(f"{label}: the scaler must be rabbitmq over http (unacked messages count)")
            if metadata.get("mode") != "QueueLength":
                fail(f"{label}: mode must be QueueLength")
            if metadata.get("value") != config["data"].get("SYNCWAY_WORKER__CONCURRENCY"):
                fail(f"{label}: value {metadata.get('value')} is not the worker concurrency")
        trigger = triggers[0]
        for key in ("minReplicaCount", "maxReplicaCount", "cooldownPeriod"):
            if not isinstance(scaled["spec"].get(key), int):
                fail(f"{label}: ScaledObject {key} missing")
        auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        if auth:
            for ref in auth["spec"]["secretTargetRef"]:
                if ref["parameter"] != "host":
                    fail(f"{label}: TriggerAuthentication parameter {ref['parameter']}")
                holder = find(objects, "Secret", ref["name"])
                if holder and ref["key"] not in holder.get("stringData", {}):
                    fail(f"{label}: the Secret has no key {ref['key']}")


def served_families():
    directory = os.environ.get("SYNCWAY_METRICS_SAMPLE_DIR")
    if not directory:
        fail("SYNCWAY_METRICS_SAMPLE_DIR is not set: run the tests first (scripts/check-deploy)")
        return set()
    names = set()
    for sample in pathlib.Path(directory).glob("*.txt"):
        for line in sample.read_text().splitlines():
            match = re.match(r"# TYPE (\S+) (\S+)", line)
            if match:
                name, kind = match.groups()
                names.add(name)
                if kind == "histogram":
                    names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    if not names:
        fail(f"no metric samples in {directory}")
    return names


def check_metrics():
    served = served_families()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "syncway.json").read_text())
    expressions += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in expressions:
        for name in re.findall(r"\bsyncway_[a-z_]+", expr):
            if served and name not in served:
                fail(f"{name} (in {expr.strip()[:60]}...) is not a metric syncway serves")


def check_compose():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        service = services.get(name)
        if not service or service.get("profiles") != ["monitoring"]:
            fail(f"compose: no {name} in the monitoring profile")
            continue
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not (ROOT / source).exists():
                fail(f"compose: {name} mounts {source}, which does not exist")
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {c["job_name"]: c for c in prometheus["scrape_configs"]}
    api = targets["syncway-api"]["static_configs"][0]["targets"][0]
    if api != "api:9090" or "9090:9090" not in " ".join(services["api"]["ports"]):
        fail("compose: Prometheus does not scrape the API's metrics port")
    if targets["syncway-worker"]["dns_sd_configs"][0]["port"] != 9091:
        fail("compose: Prometheus does not scrape the workers' metrics port (9091)")
    for name in (v for s in services.values() for v in (s.get("environment") or {})
                 if isinstance(s.get("environment"), dict)):
        if name.startswith("SYNCWAY_") and name not in documented_settings():
            fail(f"compose: {name} is not a setting README documents")


def main():
    base = base_objects()
    check(base, "base")
    check(overlay(base, "production"), "production")
    check_metrics()
    check_compose()
    if errors:
        for error in errors:
            print(f"deploy check: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy check: {len(base)} objects (base and production), alert rules, dashboard and compose: OK")


if __name__ == "__main__":
    main()
