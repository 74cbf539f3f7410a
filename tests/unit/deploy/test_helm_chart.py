"""The Helm chart renders what the service reads, and its schema refuses what the service would.

Runs the real ``helm`` (``scripts/setup`` builds it into ``.devstack/bin``): ``helm lint --strict``
and ``helm template`` of the default values and of variations, parsed and checked against
``service.config.Settings``, so a renamed or added setting the chart does not pass breaks a test.
A missing ``helm`` fails, as a skip would let the chart rot unnoticed in CI.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings, env_names, load_settings
from service.sinks.kafka import INSTANCE_ID_ENV

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "helm" / "kafka-dstreams"
RELEASE = "wc"
NAMESPACE = "streams"

Doc = dict[str, Any]
Values = dict[str, Any]

# every setting set to a value other than its default; numbers large enough that Go's float
# formatting (1e+06) would show
ALL_SETTINGS: Values = {
    "job": "jobs.wordcount:setup",
    "jobName": "word-count",
    "groupId": "wc-group",
    "batchIntervalSeconds": 0.5,
    "maxRatePerPartition": 2500000,
    "dlq": {"topic": "wc-dead", "maxAttempts": 5, "maxRecordBytes": 1048576},
    "logLevel": "DEBUG",
    "shutdownGraceSeconds": 40,
    "kafka": {"bootstrapServers": "k0:9092,k1:9092"},
    "redis": {
        "url": "redis+cluster://r0:7000",
        "waitReplicas": 2,
        "waitAof": True,
        "waitTimeoutMs": 2500,
    },
    "metrics": {"port": 9200},
}
SECRETS: Values = {
    "kafka": {"existingSecret": "dstreams-kafka", "existingSecretKey": "bootstrap"},
    "redis": {"existingSecret": "dstreams-redis", "existingSecretKey": "url"},
}
MONITORED: Values = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "podDisruptionBudget": {"enabled": True},
}
CONFIG_MAP: Values = {
    "jobConfigMap": "my-jobs",
    "job": "/app/jobs/my_job.py",
    "jobArgs": ["in-topic", "out-topic"],
}
VARIATIONS: dict[str, Values] = {
    "defaults": {},
    "all-settings": ALL_SETTINGS,
    "deployment": {"kind": "Deployment"},
    "existing-secrets": SECRETS,
    "monitored": MONITORED,
    "job-config-map": CONFIG_MAP,
}


def _helm_binary() -> str:
    local = REPO / ".devstack" / "bin" / "helm"
    if local.is_file():
        return str(local)
    found = shutil.which("helm")
    if found is None:
        pytest.fail("helm not found in .devstack/bin or on PATH: run scripts/setup")
    return found


@pytest.fixture(scope="module")
def helm() -> str:
    return _helm_binary()


@pytest.fixture
def run_helm(
    helm: str, tmp_path: Path
) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    def run(command: str, values: Values, *extra: str) -> subprocess.CompletedProcess[str]:
        # JSON is YAML: a values file avoids --set's escaping and typing rules
        values_file = tmp_path / "values.yaml"
        values_file.write_text(json.dumps(values), encoding="utf-8")
        args = [helm, command]
        if command == "template":
            args += [RELEASE, "--namespace", NAMESPACE]
        args += [str(CHART), "--values", str(values_file), *extra]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    yield run


@pytest.fixture
def render(
    run_helm: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[[Values], list[Doc]]:
    def rendered(values: Values) -> list[Doc]:
        result = run_helm("template", values)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return rendered


def _only(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def _workload(docs: list[Doc]) -> Doc:
    found = [doc for doc in docs if doc["kind"] in ("StatefulSet", "Deployment")]
    assert len(found) == 1
    return found[0]


def _container(docs: list[Doc]) -> Doc:
    containers = _workload(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Doc = containers[0]
    return container


def _env(docs: list[Doc]) -> dict[str, Doc]:
    entries = _container(docs)["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {entry["name"]: entry for entry in entries}


def _literal_env(docs: list[Doc]) -> dict[str, str]:
    return {name: entry["value"] for name, entry in _env(docs).items() if "value" in entry}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _setting_env_names() -> set[str]:
    return {name for field in Settings.model_fields for name in env_names(field)}


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_lint_strict_passes(
    run_helm: Callable[..., subprocess.CompletedProcess[str]], variation: str
) -> None:
    result = run_helm("lint", VARIATIONS[variation], "--strict")
    assert result.returncode == 0, result.stdout + result.stderr


def test_app_version_is_the_services() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == project["project"]["version"]


def test_every_setting_is_passed_under_its_own_name(render: Callable[[Values], list[Doc]]) -> None:
    rendered = set(_env(render(ALL_SETTINGS)))
    for field in Settings.model_fields:
        assert rendered & set(env_names(field)), f"the chart does not pass setting {field}"
    # nothing the service would ignore: a setting renamed in service/config.py shows up here
    service_vars = {n for n in rendered if n.startswith(("DSTREAMS_", "KAFKA_", "REDIS_"))}
    assert service_vars - _setting_env_names() == {INSTANCE_ID_ENV}


def test_rendered_settings_load_as_given(
    render: Callable[[Values], list[Doc]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _setting_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in _literal_env(render(ALL_SETTINGS)).items():
        monkeypatch.setenv(name, value)
    conf = load_settings()
    assert conf.kafka_bootstrap_servers == ALL_SETTINGS["kafka"]["bootstrapServers"]
    assert conf.redis_url == ALL_SETTINGS["redis"]["url"]
    assert conf.redis_wait_replicas == ALL_SETTINGS["redis"]["waitReplicas"]
    assert conf.redis_wait_aof is ALL_SETTINGS["redis"]["waitAof"]
    assert conf.redis_wait_timeout_ms == ALL_SETTINGS["redis"]["waitTimeoutMs"]
    assert conf.job_name == ALL_SETTINGS["jobName"]
    assert conf.group_id == ALL_SETTINGS["groupId"]
    assert conf.batch_interval_seconds == ALL_SETTINGS["batchIntervalSeconds"]
    assert conf.max_rate_per_partition == ALL_SETTINGS["maxRatePerPartition"]
    assert conf.dlq_topic == ALL_SETTINGS["dlq"]["topic"]
    assert conf.dlq_max_attempts == ALL_SETTINGS["dlq"]["maxAttempts"]
    assert conf.max_record_bytes == ALL_SETTINGS["dlq"]["maxRecordBytes"]
    assert conf.log_level == ALL_SETTINGS["logLevel"]
    assert conf.metrics_port == ALL_SETTINGS["metrics"]["port"]
    assert conf.metrics_host == "0.0.0.0"
    assert conf.shutdown_grace_seconds == ALL_SETTINGS["shutdownGraceSeconds"]


def test_default_values_load_into_settings(
    render: Callable[[Values], list[Doc]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _setting_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in _literal_env(render({})).items():
        monkeypatch.setenv(name, value)
    conf = load_settings()
    assert conf.metrics_port == 9108
    assert conf.metrics_host == "0.0.0.0"
    assert conf.shutdown_grace_seconds == 25


@pytest.mark.parametrize("kind", ["StatefulSet", "Deployment"])
def test_instance_id_is_the_pod_name(render: Callable[[Values], list[Doc]], kind: str) -> None:
    docs = render({"kind": kind})
    assert _workload(docs)["kind"] == kind
    entry = _env(docs)[INSTANCE_ID_ENV]
    assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_statefulset_is_parallel_and_governed_by_a_headless_service(
    render: Callable[[Values], list[Doc]],
) -> None:
    docs = render({"replicaCount": 3})
    workload = _only(docs, "StatefulSet")
    spec = workload["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert _matches(spec["selector"]["matchLabels"], pod_labels)
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert _matches(headless["spec"]["selector"], pod_labels)
    assert not any(doc["kind"] == "Deployment" for doc in docs)


def test_deployment_kind_has_no_statefulset_parts(render: Callable[[Values], list[Doc]]) -> None:
    docs = render({"kind": "Deployment"})
    spec = _only(docs, "Deployment")["spec"]
    assert "serviceName" not in spec
    assert "podManagementPolicy" not in spec
    services = [doc for doc in docs if doc["kind"] == "Service"]
    assert [s["spec"].get("clusterIP") for s in services] == [None]
    assert not any(doc["kind"] == "StatefulSet" for doc in docs)


@pytest.mark.parametrize("port", [9108, 9300])
def test_probes_use_the_metrics_port(render: Callable[[Values], list[Doc]], port: int) -> None:
    docs = render({"metrics": {"port": port}})
    container = _container(docs)
    env = _literal_env(docs)
    assert env["DSTREAMS_METRICS_PORT"] == str(port)
    assert env["DSTREAMS_METRICS_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": port}
    paths = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}
    metrics = next(d for d in docs if d["metadata"]["name"].endswith("-metrics"))
    assert metrics["spec"]["ports"][0]["targetPort"] == "metrics"
    annotations = _workload(docs)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


@pytest.mark.parametrize("grace", [25, 7.5, 120])
def test_termination_grace_outlasts_the_shutdown_grace(
    render: Callable[[Values], list[Doc]], grace: float
) -> None:
    docs = render({"shutdownGraceSeconds": grace})
    pod = _workload(docs)["spec"]["template"]["spec"]
    assert float(_literal_env(docs)["DSTREAMS_SHUTDOWN_GRACE_SECONDS"]) == grace
    assert isinstance(pod["terminationGracePeriodSeconds"], int)
    assert pod["terminationGracePeriodSeconds"] >= math.ceil(grace) + 5


def test_default_termination_grace_is_thirty_seconds(
    render: Callable[[Values], list[Doc]],
) -> None:
    pod = _workload(render({}))["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30


def test_pod_runs_unprivileged_on_a_read_only_root(render: Callable[[Values], list[Doc]]) -> None:
    docs = render({})
    pod = _workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    container = _container(docs)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "memory" in container["resources"]["limits"]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}


def test_existing_secrets_replace_the_literal_addresses(
    render: Callable[[Values], list[Doc]],
) -> None:
    docs = render(SECRETS)
    env = _env(docs)
    assert env["REDIS_URL"] == {
        "name": "REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "dstreams-redis", "key": "url"}},
    }
    assert env["KAFKA_BOOTSTRAP_SERVERS"]["valueFrom"] == {
        "secretKeyRef": {"name": "dstreams-kafka", "key": "bootstrap"}
    }
    assert "redis://" not in yaml.safe_dump_all(docs)


def test_redis_url_may_be_left_empty_with_a_secret(render: Callable[[Values], list[Doc]]) -> None:
    values = {"redis": {"url": "", "existingSecret": "dstreams-redis"}}
    assert "secretKeyRef" in _env(render(values))["REDIS_URL"]["valueFrom"]


def test_optional_objects_are_off_by_default(render: Callable[[Values], list[Doc]]) -> None:
    kinds = {doc["kind"] for doc in render({})}
    assert kinds == {"StatefulSet", "Service", "ServiceAccount"}


def test_service_monitor_scrapes_the_metrics_service_only(
    render: Callable[[Values], list[Doc]],
) -> None:
    docs = render(MONITORED)
    monitor = _only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [
        ("metrics", "/metrics")
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        doc["metadata"]["name"]
        for doc in docs
        if doc["kind"] == "Service" and _matches(selector, doc["metadata"]["labels"])
    ]
    assert selected == [f"{RELEASE}-kafka-dstreams-metrics"]


def test_disruption_budget_takes_one_pod_at_a_time(
    render: Callable[[Values], list[Doc]],
) -> None:
    docs = render(MONITORED)
    budget = _only(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = _workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert _matches(budget["spec"]["selector"]["matchLabels"], pod_labels)


def test_job_config_map_is_mounted_under_app_jobs(render: Callable[[Values], list[Doc]]) -> None:
    docs = render(CONFIG_MAP)
    container = _container(docs)
    assert container["args"] == ["run", "/app/jobs/my_job.py", "in-topic", "out-topic"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/app/jobs")
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in _workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == "my-jobs"
    assert _literal_env(docs)["PYTHONPATH"] == "/app/jobs"


def test_no_config_map_no_jobs_volume(render: Callable[[Values], list[Doc]]) -> None:
    docs = render({})
    container = _container(docs)
    assert container["args"] == ["run", "examples/kafka_wordcount.py"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert "PYTHONPATH" not in _env(docs)


def test_extra_env_is_appended(render: Callable[[Values], list[Doc]]) -> None:
    extra = [{"name": "TZ", "value": "UTC"}]
    entries = _container(render({"extraEnv": extra}))["env"]
    assert entries[-1] == extra[0]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicaCount": 1.5}, "/replicaCount"),
        ({"job": ""}, "/job"),
        ({"job": None}, "missing property 'job'"),
        ({"kind": "DaemonSet"}, "/kind"),
        ({"redis": {"url": "http://redis:6379/0"}}, "/redis/url"),
        ({"redis": {"url": "redis:6379"}}, "/redis/url"),
        ({"redis": {"url": ""}}, "/redis/url"),
        ({"kafka": {"bootstrapServers": ""}}, "/kafka/bootstrapServers"),
        ({"logLevel": "TRACE"}, "/logLevel"),
        ({"batchIntervalSeconds": 0}, "/batchIntervalSeconds"),
        ({"maxRatePerPartition": -5}, "/maxRatePerPartition"),
        ({"shutdownGraceSeconds": 0}, "/shutdownGraceSeconds"),
        ({"dlq": {"maxAttempts": 0}}, "/dlq/maxAttempts"),
        ({"redis": {"waitReplicas": -1}}, "/redis/waitReplicas"),
        ({"redis": {"waitAof": "yes"}}, "/redis/waitAof"),
        ({"metrics": {"port": 0}}, "/metrics/port"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"jobName": "has space"}, "/jobName"),
        ({"replicas": 3}, "'replicas' not allowed"),
        (
            {"extraEnv": [{"name": "REDIS_URL", "value": "redis://other:6379"}]},
            "extraEnv sets REDIS_URL",
        ),
    ],
)
def test_bad_values_fail_to_render(
    run_helm: Callable[..., subprocess.CompletedProcess[str]], values: Values, complaint: str
) -> None:
    result = run_helm("template", values)
    assert result.returncode != 0, f"rendered with {values}"
    assert complaint in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis://r:6379/0",
        "rediss://:pw@r:6380/1",
        "unix:///run/redis.sock",
        "redis+cluster://r0:7000",
        "rediss+cluster://r0:7000",
    ],
)
def test_every_redis_scheme_of_the_service_is_accepted(
    render: Callable[[Values], list[Doc]], url: str
) -> None:
    assert _literal_env(render({"redis": {"url": url}}))["REDIS_URL"] == url
    assert Settings(redis_url=url).redis_url == url
