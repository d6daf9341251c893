"""The deployment files: they parse, match their schemas, agree with each other and with
the code, and Prometheus's own tool accepts the config, the alerts and their unit tests."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no type information
import pytest
import yaml

from streamlearn.settings import Settings, load_settings, token_problem
from tests.support.deployfiles import alert_rules, dashboard, dashboard_exprs

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.31.0"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def promtool(*args: str, cwd: Path = DEPLOY) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("STREAMLEARN_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required here (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    done = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# -- Prometheus ------------------------------------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool() -> None:
    promtool("check", "config", "prometheus/prometheus.yml")
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", "prometheus/rules.yml")


def test_every_alert_fires_on_its_failure_and_not_before() -> None:
    promtool("test", "rules", "rules_test.yml", cwd=Path(__file__).parent)
    alerts = {rule["alert"] for rule in alert_rules()}
    tested = set(
        re.findall(r"alertname: (\w+)", (Path(__file__).parent / "rules_test.yml").read_text())
    )
    assert alerts == tested, f"alerts without a unit test: {alerts - tested}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: wrap the dashboard's in one.
    exprs = dashboard_exprs()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(exprs)} rules found" in promtool(
        "check", "rules", "dashboard.yml", cwd=tmp_path
    )


# -- Grafana ---------------------------------------------------------------------------------


def test_dashboard_covers_what_operators_watch_and_is_provisioned() -> None:
    board = dashboard()
    text = json.dumps(board)
    for metric in (
        "samples_learned_total",
        "consumer_lag",
        "prequential_accuracy",
        "expert_accuracy",
        "prequential_loss",
        "expert_loss",
        "experts_alive",
        "expert_active",
        "learn_latency_seconds_bucket",
        "request_latency_seconds_bucket",
        "snapshot_age_seconds",
        "checkpoint_age_seconds",
        "records_invalid_total",
        "tta_adapted_samples_total",
        "tta_resets_total",
        "input_shift_statistic",
        "input_shift_events_total",
        "sync_lost_total",
        "sync_members",
    ):
        assert f"streamlearn_{metric}" in text, metric
    assert "streamlearn_drift_events_total" in board["annotations"]["list"][0]["expr"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    (source,) = load_all(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[0][
        "datasources"
    ]
    assert {p["datasource"]["uid"] for p in board["panels"] if "datasource" in p} == {source["uid"]}
    (provider,) = load_all(DEPLOY / "grafana/provisioning/dashboards/streamlearn.yml")[0][
        "providers"
    ]
    grafana = compose()["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]


# -- Compose ---------------------------------------------------------------------------------

SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "volumes",
    "depends_on",
    "healthcheck",
    "restart",
    "stop_grace_period",
    "shm_size",
}


def compose() -> dict[str, Any]:
    return load_all(DEPLOY / "docker-compose.yml")[0]


_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (unset and empty alike)."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise LookupError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return _VARIABLE.sub(value, text)


def published(service: dict[str, Any], env: dict[str, str]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each port a service publishes."""
    out = []
    for entry in service.get("ports", []):
        address, host, container = interpolate(entry, env).rsplit(":", 2)
        out.append((address, int(host), int(container)))
    return out


def test_compose_publishes_ports_on_loopback_unless_told_otherwise() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for address, host, _ in published(service, {}):
            assert address == "127.0.0.1", f"{name}: {host} is open to every interface"
        assert {a for a, _, _ in published(service, {"STREAMLEARN_BIND": "0.0.0.0"})} <= {
            "0.0.0.0"
        }, name
    assert ("127.0.0.1", 8080, 8080) in published(services["streamlearn"], {})


def test_compose_requires_a_token_and_ships_none() -> None:
    env = compose()["services"]["streamlearn"]["environment"]
    reference = env["STREAMLEARN_SERVE__AUTH_TOKEN"]
    with pytest.raises(LookupError, match="STREAMLEARN_AUTH_TOKEN: set STREAMLEARN_AUTH_TOKEN"):
        interpolate(reference, {})
    token = secrets.token_hex(24)
    assert interpolate(reference, {"STREAMLEARN_AUTH_TOKEN": token}) == token


def test_compose_services_are_complete_and_consistent() -> None:
    spec = compose()
    assert set(spec) <= {"name", "services", "volumes"}
    services = spec["services"]
    assert {"kafka", "topics", "streamlearn", "producer", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unknown keys {set(service) - SERVICE_KEYS}"
        assert "image" in service or "build" in service, name
        for other, condition in (
            service.get("depends_on", {}).items()
            if isinstance(service.get("depends_on"), dict)
            else []
        ):
            assert other in services, f"{name} depends on unknown {other}"
            assert condition["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in spec["volumes"], f"{name}: volume {source} not declared"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["streamlearn"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert services["streamlearn"]["shm_size"] == "256mb"  # snapshots between processes


def test_compose_environment_is_valid_settings() -> None:
    env = compose()["services"]["streamlearn"]["environment"]
    host = {"STREAMLEARN_AUTH_TOKEN": secrets.token_hex(24)}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in env.items():
        section, _, field = key.removeprefix("STREAMLEARN_").lower().partition("__")
        sections.setdefault(section, {})[field] = interpolate(str(value), host)
    settings = load_settings(None, **sections)
    assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_compose_scrapes_the_metrics_port_the_daemon_opens() -> None:
    (job,) = load_all(DEPLOY / "prometheus/prometheus.yml")[0]["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    assert target == f"streamlearn:{Settings().metrics.port}"
    port = Settings().metrics.port
    assert ("127.0.0.1", port, port) in published(compose()["services"]["streamlearn"], {})


def test_stop_grace_periods_cover_the_drain_budget() -> None:
    s = Settings()
    budget = s.serve.shutdown_delay_s + s.serve.drain_timeout_s + s.kafka.flush_timeout_s
    grace = compose()["services"]["streamlearn"]["stop_grace_period"]
    assert float(grace.removesuffix("s")) > budget
    (statefulset,) = [d for d in k8s_docs() if d["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + budget


# -- Kubernetes ------------------------------------------------------------------------------


def k8s_docs(overlay: str = "base") -> list[dict[str, Any]]:
    """The manifests a kustomization lists, its bases' included (patches not applied)."""
    folder = DEPLOY / "k8s" / overlay
    kustomization = load_all(folder / "kustomization.yaml")[0]
    docs = []
    for name in kustomization["resources"]:
        path = (folder / name).resolve()
        docs += k8s_docs(str(path.relative_to(DEPLOY / "k8s"))) if path.is_dir() else load_all(path)
    return docs


def test_manifests_match_the_kubernetes_schemas() -> None:
    kinds = []
    for doc in k8s_docs("monitoring"):
        kinds.append(doc["kind"])
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert sorted(kinds) == ["ConfigMap", "Service", "Service", "ServiceMonitor", "StatefulSet"]
    assert "ServiceMonitor" not in {d["kind"] for d in k8s_docs()}  # base: no CRD needed


@pytest.mark.parametrize("overlay", ["base", "gpu", "monitoring"])
def test_kustomize_builds_each_overlay_into_valid_manifests(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the overlays are checked file by file above")
    built = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    for doc in docs:
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    names = sorted(e["name"] for e in container["env"])
    base = ["STREAMLEARN_KAFKA__GROUP_INSTANCE_ID", "STREAMLEARN_SERVE__AUTH_TOKEN"]
    # Scale-out's rendezvous (torchrun's variables) and its switch, off in the base.
    base = sorted(
        [*base, "MASTER_ADDR", "MASTER_PORT", "RANK", "STREAMLEARN_SYNC__ENABLED", "WORLD_SIZE"]
    )
    if overlay == "gpu":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert names == sorted([*base, "STREAMLEARN_MODEL__DEVICE"])
    else:
        assert names == base


def test_service_monitor_scrapes_the_services_metrics_port() -> None:
    docs = k8s_docs("monitoring")
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    (endpoint,) = monitor["spec"]["endpoints"]
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "streamlearn"
    )
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_statefulset_wires_config_secret_probes_and_volume() -> None:
    docs = k8s_docs()
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    settings = yaml.safe_load(config["data"]["streamlearn.yaml"])
    Settings(**settings)  # the ConfigMap is valid settings
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert container["args"] == ["run", "--config", f"{mounts['config']}/streamlearn.yaml"]
    assert mounts["checkpoints"] == settings["checkpoint"]["dir"]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "checkpoints"
    # Snapshots go from the learner process to the serving processes through /dev/shm.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["shm"] == "/dev/shm" and volumes["shm"]["emptyDir"]["medium"] == "Memory"
    env = {e["name"]: e for e in container["env"]}
    assert env["STREAMLEARN_SERVE__AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "streamlearn-token",
        "key": "token",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    s = Settings()
    assert ports == {
        "http": s.serve.http_port,
        "grpc": s.serve.grpc_port,
        "metrics": s.metrics.port,
        "rendezvous": int(env["MASTER_PORT"]["value"]),  # scale-out: pod 0 hosts the store
    }
    assert (
        env["MASTER_ADDR"]["value"]
        == f"{statefulset['metadata']['name']}-0.{statefulset['spec']['serviceName']}"
    )
    index = "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == index


def test_statefulset_sets_the_group_instance_id_to_the_pod_name() -> None:
    (statefulset,) = [d for d in k8s_docs() if d["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    source = env["STREAMLEARN_KAFKA__GROUP_INSTANCE_ID"]["valueFrom"]
    assert source == {"fieldRef": {"fieldPath": "metadata.name"}}
    # A pod's name is a valid instance id.
    pod = f"{statefulset['metadata']['name']}-0"
    assert load_settings(None, kafka={"group_instance_id": pod}).kafka.group_instance_id == pod


def test_the_token_secret_is_documented_not_shipped() -> None:
    (statefulset,) = [d for d in k8s_docs("monitoring") if d["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    ref = next(e for e in container["env"] if e["name"] == "STREAMLEARN_SERVE__AUTH_TOKEN")[
        "valueFrom"
    ]["secretKeyRef"]
    assert "optional" not in ref  # no token, no pod: never a pod with writes silently off
    create = (
        f"kubectl create secret generic {ref['name']} "
        f"--from-literal={ref['key']}=$(openssl rand -hex 24)"
    )
    assert create in (DEPLOY / "k8s/base/kustomization.yaml").read_text()
    assert create in (ROOT / "docs/operations.md").read_text()
    secrets_shipped = [
        path
        for path in (DEPLOY / "k8s").rglob("*.yaml")
        for doc in load_all(path)
        if doc.get("kind") == "Secret"
    ]
    assert not secrets_shipped


def token_values(node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every literal a deploy file gives a token, secret or password (by key or env name)."""
    found = []
    if isinstance(node, dict):
        name = str(node.get("name", ""))
        if re.search(r"token|secret|password", name, re.I) and "value" in node:
            found.append((f"{where}.{name}", str(node["value"])))
        for key, value in node.items():
            if isinstance(value, str) and re.search(r"token|secret|password", str(key), re.I):
                found.append((f"{where}.{key}", value))
            found += token_values(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += token_values(item, f"{where}[{index}]")
    return found


def test_no_known_token_ships_anywhere_in_deploy() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in {".yml", ".yaml"}]
    assert files
    for path in files:
        text = path.read_text()
        assert not re.search(r"change-?me", text, re.I), f"{path}: a placeholder token"
        for where, value in (t for doc in load_all(path) for t in token_values(doc)):
            # Only a reference Compose must fill from the environment, with no default.
            assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{path}{where}: {value!r}"
    # And the rule the daemon applies would refuse the old shipped one anyway.
    assert token_problem("change-me") is not None


def test_gpu_overlay_asks_for_a_gpu_and_cuda() -> None:
    overlay = load_all(DEPLOY / "k8s/gpu/kustomization.yaml")[0]
    assert overlay["resources"] == ["../base"]
    (patch,) = overlay["patches"]
    doc = load_all(DEPLOY / "k8s/gpu" / patch["path"])[0]
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert {"name": "STREAMLEARN_MODEL__DEVICE", "value": "cuda"} in container["env"]


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    return list(json.loads(arguments))


def test_dockerfile_builds_in_stages_runs_unprivileged_and_stops_gracefully() -> None:
    steps = dockerfile()
    froms = [a for i, a in steps if i == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    assert any(
        i == "ARG" and a.startswith("TORCH_INDEX_URL=") and a.endswith("/cpu") for i, a in steps
    )
    (user,) = [a for i, a in steps if i == "USER"]
    assert user not in ("root", "0")
    assert ("STOPSIGNAL", "SIGTERM") in steps
    (healthcheck,) = [a for i, a in steps if i == "HEALTHCHECK"]
    assert f"127.0.0.1:{Settings().serve.http_port}/v2/health/live" in healthcheck
    (volume,) = [exec_form(a) for i, a in steps if i == "VOLUME"]
    env = " ".join(a for i, a in steps if i == "ENV")
    assert f"STREAMLEARN_CHECKPOINT__DIR={volume[0]}" in env
    ignored = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ignored[0] == "*"  # nothing but what the build copies
    kept = [line[1:].rstrip("/") for line in ignored if line.startswith("!")]
    copied = [
        source
        for i, a in steps
        if i == "COPY" and not a.startswith("--from")
        for source in a.split()[:-1]
    ]
    for source in copied:  # each is let back in, itself or a folder above it
        assert any(source == k or source.startswith(f"{k}/") for k in kept), source


def test_the_image_runs_the_command_the_readme_documents() -> None:
    steps = dockerfile()
    (entrypoint,) = [exec_form(a) for i, a in steps if i == "ENTRYPOINT"]
    (cmd,) = [exec_form(a) for i, a in steps if i == "CMD"]
    readme = (ROOT / "README.md").read_text()
    documented = re.search(r"The image runs `([^`]+)`", readme)
    assert documented, "README: the container section must say what the image runs"
    assert entrypoint + cmd == shlex.split(documented.group(1))
    config = cmd[cmd.index("--config") + 1]
    assert any(i == "COPY" and a.endswith(config) for i, a in steps)


def test_compose_replicas_override_runs_two_ranks_of_one_group() -> None:
    base = compose()["services"]
    override = load_all(DEPLOY / "docker-compose.replicas.yml")[0]
    services = override["services"]
    host = {"STREAMLEARN_AUTH_TOKEN": secrets.token_hex(24)}
    ranks = {}
    for name in ("streamlearn", "streamlearn-1"):
        env = {**base.get(name, {}).get("environment", {}), **services[name]["environment"]}
        sync = {k: v for k, v in env.items() if not k.startswith("STREAMLEARN_")}
        sections: dict[str, dict[str, Any]] = {}
        for key, value in env.items():
            if key.startswith("STREAMLEARN_"):
                section, _, field = key.removeprefix("STREAMLEARN_").lower().partition("__")
                sections.setdefault(section, {})[field] = interpolate(str(value), host)
        assert load_settings(None, **sections).sync.enabled, name
        assert sync["WORLD_SIZE"] == "2" and sync["MASTER_ADDR"] == "streamlearn", name
        ranks[name] = sync["RANK"]
    assert ranks == {"streamlearn": "0", "streamlearn-1": "1"}
    assert "--partitions 4" in services["topics"]["command"][0]
    (job,) = load_all(DEPLOY / "prometheus/prometheus.replicas.yml")[0]["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["streamlearn:9100", "streamlearn-1:9100"]
    for volume in services["streamlearn-1"]["volumes"]:
        assert volume.split(":")[0] in override["volumes"]
