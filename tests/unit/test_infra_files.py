"""infra/: every file parses, has the structure its tool needs, holds no secret, and every
command it runs exists in this repository (`cajnn` subcommands, `make` targets, `python -m`
modules) or in the pinned tools (`mlflow`, `dvc`, `ray` subcommands)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)


def _yaml(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((INFRA / rel).read_text()) if d is not None]


def _unit(rel: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((INFRA / rel).read_text())
    return parser


# --------------------------------------------------------------------------- the command checker

def _cli_commands() -> set[str]:
    from typer.main import get_command

    from cajnn.cli import app

    return set(get_command(app).commands)


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", (REPO / "Makefile").read_text(), re.MULTILINE))


def _mlflow_commands() -> dict[str, set[str]]:
    import click
    from mlflow.cli import cli

    return {name: set(cmd.commands) if isinstance(cmd, click.Group) else set() for name, cmd in cli.commands.items()}


DVC = {"repro": set(), "exp": {"run", "show", "apply"}, "pull": set(), "push": set(), "status": set(), "dag": set()}
RAY = {"start", "stop", "up", "down", "exec", "status", "submit", "job"}
SHELL_BUILTINS = {"cd", "set", "test", ".", "source", "echo", "true", "exit", "git", "[", "export"}


def check_command(command: str | list[str], found: list[tuple[str, ...]]) -> list[str]:
    """Errors for the programs `command` runs that do not exist; appends what was checked."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    errors: list[str] = []
    segment: list[str] = []
    for w in [*words, "&&"]:
        if w not in ("&&", "||", ";", "|"):
            segment.append(w)
            continue
        while segment and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", segment[0]):  # FOO=bar cmd
            segment.pop(0)
        cleaned, skip = [], False
        for word in segment:  # drop redirections: `>> file`, `2>&1`
            if skip:
                skip = False
            elif word in (">", ">>", "<", "2>"):
                skip = True
            elif not re.fullmatch(r"\d?(>>?|<)\S*|\d?>&\d", word):
                cleaned.append(word)
        segment = cleaned
        if segment:
            errors += _check_segment(segment, found)
        segment = []
    return errors


def _check_segment(seg: list[str], found: list[tuple[str, ...]]) -> list[str]:
    prog, args = (seg[0] if seg[0] == "." else Path(seg[0]).name), seg[1:]
    if prog == "cajnn" and (not args or args[0].startswith("-")):
        return []  # `cajnn --help`
    if prog in ("bash", "sh") and "-c" in args:
        return check_command(args[args.index("-c") + 1], found)
    if prog == "cajnn":
        found.append(("cajnn", args[0]))
        return [] if args[0] in _cli_commands() else [f"cajnn {args[0]}: no such subcommand"]
    if prog == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        found += [("make", t) for t in targets]
        return [f"make {t}: no such Makefile target" for t in targets if t not in _make_targets()]
    if prog in ("python", "python3") and args[:1] == ["-m"]:
        module = args[1]
        found.append(("python -m", module))
        if module.startswith(("pipelines.", "cajnn.")):
            return [] if (REPO / (module.replace(".", "/") + ".py")).is_file() else [f"python -m {module}: no such module"]
        return check_command([module, *args[2:]], found) if module in ("dvc", "mlflow") else []
    if prog in ("python", "python3"):
        return []  # python -c ...
    if prog == "mlflow":
        groups = _mlflow_commands()
        sub = args[:2] if groups.get(args[0]) else args[:1]
        found.append(("mlflow", " ".join(sub)))
        if sub[0] not in groups:
            return [f"mlflow {sub[0]}: no such command"]
        return [f"mlflow {' '.join(sub)}: no such command"] if len(sub) > 1 and sub[1] not in groups[sub[0]] else []
    if prog == "dvc":
        found.append(("dvc", " ".join(args[:2] if args[0] == "exp" else args[:1])))
        if args[0] not in DVC or (DVC[args[0]] and args[1] not in DVC[args[0]]):
            return [f"dvc {' '.join(args[:2])}: not a dvc command we use"]
        return []
    if prog == "ray":
        found.append(("ray", args[0]))
        return [] if args[0] in RAY else [f"ray {args[0]}: not a ray command"]
    if prog in SHELL_BUILTINS:
        return []
    return [f"{prog}: unknown program (add it to the checker if it is legitimate)"]


def test_the_checker_catches_missing_commands():
    found: list = []
    assert check_command("cajnn retrain", found) == [] and ("cajnn", "retrain") in found
    assert check_command("cajnn retrainz", found) and check_command("make nosuchtarget", found)
    assert check_command("python -m pipelines.nosuchstage", found) and check_command("mlflow models serv -m x", found)
    assert check_command(["bash", "-c", "cd /x && FOO=1 make retrain"], found) == []
    assert check_command("python -m pipelines.register", found) == []
    assert check_command("cd /srv && set -a && . /etc/x.env && make retrain >> /var/log/x.log 2>&1", found) == []


# --------------------------------------------------------------------------- all commands in infra/

def _all_commands() -> list[tuple[str, str | list[str]]]:
    cmds: list[tuple[str, str | list[str]]] = []
    for name, svc in _yaml("compose.yaml")[0]["services"].items():
        if "command" in svc and svc.get("image", "").startswith("cajnn"):  # others: their image's own CLI
            cmds.append((f"compose {name}", svc["command"]))
    for doc in _yaml("k8s/retrain-cronjob.yaml"):
        if doc["kind"] == "CronJob":
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                cmds.append((f"cronjob {c['name']}", [*c.get("command", []), *c.get("args", [])]))
    cmds.append(("rayjob entrypoint", _yaml("ray/rayjob.yaml")[0]["spec"]["entrypoint"]))
    cluster = _yaml("ray/cluster.yaml")[0]
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        cmds += [(f"ray up {key}", c) for c in cluster.get(key) or []]
    cmds.append(("systemd ExecStart", _unit("systemd/cajnn-retrain.service")["Service"]["ExecStart"]))
    cmds.append(("cron", _cron_line().split(None, 6)[6]))
    cmds.append(("Dockerfile CMD", json.loads(re.search(r"^CMD (.+)$", (INFRA / "Dockerfile").read_text(), re.M).group(1))))
    return cmds


def test_every_command_in_infra_exists():
    found: list[tuple[str, ...]] = []
    errors = [f"{where}: {e}" for where, cmd in _all_commands() for e in check_command(cmd, found)]
    assert errors == []
    for needed in [("cajnn", "retrain"), ("make", "retrain"), ("mlflow", "server"), ("mlflow", "models serve"),
                   ("dvc", "exp run"), ("ray", "start")]:
        assert needed in found, needed


# --------------------------------------------------------------------------- structure of each file

@pytest.mark.parametrize("path", sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.y*ml")))
def test_yaml_files_parse(path):
    docs = _yaml(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_compose_mlflow_server_with_minio_artifacts():
    compose = _yaml("compose.yaml")[0]
    services = compose["services"]
    assert {"minio", "mlflow"} <= set(services)
    assert services["minio"]["image"].startswith("minio/minio") and services["minio"]["healthcheck"]
    cmd = services["mlflow"]["command"]
    assert cmd[:2] == ["mlflow", "server"]
    backend = cmd[cmd.index("--backend-store-uri") + 1]
    assert backend.startswith(("sqlite:///", "postgresql://"))
    assert cmd[cmd.index("--artifacts-destination") + 1].startswith("s3://")
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["mlflow"]["depends_on"]["buckets"]["condition"] == "service_completed_successfully"
    assert services["buckets"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            assert src in compose.get("volumes", {}) or src.startswith("."), vol
        assert svc.get("image") or svc.get("build")
    serve = services["serve"]["command"]
    assert serve[serve.index("-m") + 1] == "models:/cajnn@champion" and "local" in serve


def test_k8s_cronjob_runs_retrain_weekly():
    docs = {d["kind"]: d for d in _yaml("k8s/retrain-cronjob.yaml")}
    assert set(docs) == {"ConfigMap", "PersistentVolumeClaim", "CronJob"}
    cron = docs["CronJob"]
    assert cron["apiVersion"] == "batch/v1"
    minute, hour, dom, month, dow = cron["spec"]["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and dom == "*" and month == "*" and dow != "*"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"][:2] == ["cajnn", "retrain"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert {e["name"] for e in container["env"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "CAJNN_RETRAIN_SOURCE"} <= set(docs["ConfigMap"]["data"])


def test_kuberay_rayjob_has_one_gpu_worker():
    (job,) = _yaml("ray/rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == version("ray")
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    (group,) = spec["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 1
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in group["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    pvcs = {d["metadata"]["name"] for d in _yaml("k8s/retrain-cronjob.yaml") if d["kind"] == "PersistentVolumeClaim"}
    assert claims <= pvcs


def test_ray_up_cluster_has_one_gpu_worker():
    (cluster,) = _yaml("ray/cluster.yaml")
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] in types and cluster["max_workers"] == 1
    workers = {k: v for k, v in types.items() if k != cluster["head_node_type"]}
    ((_, gpu),) = workers.items()
    assert gpu["resources"]["GPU"] == 1 and gpu["min_workers"] == gpu["max_workers"] == 1
    assert cluster["provider"]["type"] and cluster["docker"]["image"]


def test_systemd_timer_and_service():
    service = _unit("systemd/cajnn-retrain.service")
    assert service["Service"]["Type"] == "oneshot" and service["Service"]["EnvironmentFile"].startswith("/etc/")
    assert service["Service"]["ExecStart"].split()[0].startswith("/")  # systemd wants an absolute path
    timer = _unit("systemd/cajnn-retrain.timer")
    assert "Mon" in timer["Timer"]["OnCalendar"] or timer["Timer"]["OnCalendar"] == "weekly"
    assert (INFRA / "systemd" / timer["Timer"]["Unit"]).is_file()
    assert timer["Install"]["WantedBy"] == "timers.target"


def _cron_line() -> str:
    (line,) = [l for l in (INFRA / "cron" / "cajnn-retrain").read_text().splitlines()
               if l.strip() and not l.startswith("#") and "=" not in l.split()[0]]
    return line


def test_cron_line_is_weekly():
    minute, hour, dom, month, dow, user, _ = _cron_line().split(None, 6)
    assert minute.isdigit() and hour.isdigit() and dom == month == "*" and dow != "*" and user == "cajnn"


def test_dockerfile():
    lines = [l for l in (INFRA / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines[0].startswith("FROM ")
    for line in lines:
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            assert all((REPO / s).exists() for s in sources), line
    assert any(l.startswith("USER ") and "root" not in l for l in lines)
    assert "scripts/setup.sh" in (INFRA / "Dockerfile").read_text() and (REPO / "scripts" / "setup.sh").is_file()


def test_no_secrets_in_infra():
    for path in INFRA.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|minioadmin|BEGIN [A-Z ]*PRIVATE KEY", text), path
    for line in (INFRA / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert not SECRET_NAME.search(key) or value == "", line

    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and SECRET_NAME.search(node["name"]) and "value" in node:
                pytest.fail(f"{where}: {node['name']} has a literal value (use valueFrom.secretKeyRef)")
            if where.startswith("compose") and "environment" in node and isinstance(node["environment"], dict):
                for k, v in node["environment"].items():
                    if SECRET_NAME.search(k):
                        assert str(v).startswith("${"), f"{where}: {k} must be an ${{...}} reference"
            for k, v in node.items():
                walk(v, where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    for path in INFRA.rglob("*.y*ml"):
        for doc in _yaml(path.relative_to(INFRA).as_posix()):
            walk(doc, path.name)


def test_readme_explains_every_file_and_variable():
    readme = (INFRA / "README.md").read_text()
    for path in INFRA.rglob("*"):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(INFRA).as_posix()
            assert rel in readme or path.name in readme or rel.rsplit(".", 1)[0] in readme, rel
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_ENDPOINT_URL", "CAJNN_RETRAIN_SOURCE"):
        assert var in readme, var


def test_make_retrain_target():
    text = (REPO / "Makefile").read_text()
    assert "retrain" in _make_targets()
    body = text.split("\nretrain:", 1)[1].split("\n\n", 1)[0]
    assert "cajnn retrain" in body and re.search(r"^\.PHONY:.*\bretrain\b", text, re.MULTILINE)
