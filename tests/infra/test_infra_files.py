"""infra/: every file parses, has the structure its tool needs, holds no secret, and every
command it runs exists in this repository (`cajnn` subcommands, `make` targets, `python -m`
modules, scripts) or in the pinned tools (`mlflow`, `dvc`, `ray` subcommands). Also what the
deployment relies on: a published, pinned S3 server image whose healthcheck program exists in
it, rsync in the image (`ray up` in Docker mode), S3 storage for Ray Train in both cluster files
(params overrides the stages really read), and retraining jobs that update their checkout to a
pinned ref before every run (infra/update-checkout.sh, run here against a local repository)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
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
# Where infra/ finds a checkout of this repository: the image's copy (infra/Dockerfile WORKDIR),
# the single-machine checkout (systemd, cron), the Kubernetes workspace volume.
CHECKOUT_ROOTS = ("/opt/cajnn/", "/srv/cajnn/", "/workspace/cajnn/")


def _repo_file(path: str) -> Path | None:
    """`path` (relative to the repository, or under one of CHECKOUT_ROOTS) as a file of this
    repository, or None when it is not one."""
    rel = next((path[len(root) :] for root in CHECKOUT_ROOTS if path.startswith(root)), path)
    return None if rel.startswith("/") else REPO / rel


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
    if prog in ("bash", "sh") and args and args[0].endswith(".sh"):  # bash infra/update-checkout.sh DIR
        found.append(("script", args[0]))
        script = _repo_file(args[0])
        return [] if script is not None and script.is_file() else [f"{args[0]}: no such script in the repository"]
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
            return (
                [] if (REPO / (module.replace(".", "/") + ".py")).is_file() else [f"python -m {module}: no such module"]
            )
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
        if args[0] == "exec" and len(args) >= 3:  # ray exec CLUSTER.yaml 'command on the head'
            return check_command(args[2], found)
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
    assert check_command("bash infra/update-checkout.sh /srv/cajnn && make retrain", found) == []
    assert check_command(["bash", "/opt/cajnn/infra/update-checkout.sh", "/workspace/cajnn"], found) == []
    assert check_command("bash infra/no-such-script.sh /srv/cajnn", found)
    assert check_command("bash /etc/elsewhere/update-checkout.sh", found)
    assert check_command("ray exec c.yaml 'cd ~/cajnn && dvc exp rnu'", found)
    assert check_command("ray exec c.yaml 'cd ~/cajnn && A=$A dvc exp run -S ray.address=auto'", found) == []


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
    cmds.append(("ray up: the documented run", _cluster_run_command()))
    service = _unit("systemd/cajnn-retrain.service")["Service"]
    cmds.append(("systemd ExecStartPre", service["ExecStartPre"]))
    cmds.append(("systemd ExecStart", service["ExecStart"]))
    cmds.append(("cron", _cron_line().split(None, 6)[6]))
    cmds.append(
        ("Dockerfile CMD", json.loads(re.search(r"^CMD (.+)$", (INFRA / "Dockerfile").read_text(), re.M).group(1)))
    )
    return cmds


def _cluster_run_command() -> str:
    """The `ray exec infra/ray/cluster.yaml "..."` command documented at the top of cluster.yaml
    (comment lines, `\\` continuations joined): how the pipeline is run on that cluster."""
    lines = [ln[1:].strip() for ln in (INFRA / "ray" / "cluster.yaml").read_text().splitlines() if ln.startswith("#")]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("ray exec infra/ray/cluster.yaml"))
    command = ""
    for line in lines[start:]:
        command += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            return command
    raise AssertionError("unterminated ray exec command in cluster.yaml")


def test_every_command_in_infra_exists():
    found: list[tuple[str, ...]] = []
    errors = [f"{where}: {e}" for where, cmd in _all_commands() for e in check_command(cmd, found)]
    assert errors == []
    for needed in [
        ("cajnn", "retrain"),
        ("make", "retrain"),
        ("mlflow", "server"),
        ("mlflow", "models serve"),
        ("dvc", "exp run"),
        ("ray", "start"),
        ("ray", "exec"),
        ("script", "infra/update-checkout.sh"),
        ("script", "/opt/cajnn/infra/update-checkout.sh"),
        ("script", "/srv/cajnn/infra/update-checkout.sh"),
    ]:
        assert needed in found, needed


# --------------------------------------------------------------------------- structure of each file


@pytest.mark.parametrize("path", sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.y*ml")))
def test_yaml_files_parse(path):
    docs = _yaml(path)
    assert docs and all(isinstance(d, dict) for d in docs)


# Programs present in the S3 server images infra/ may use, from the image's published build
# file (checked when the pin changes): chrislusf/seaweedfs is built FROM alpine
# (seaweedfs/seaweedfs docker/Dockerfile.go_build), so busybox's `wget` is there; the 4.x final
# stage also installs curl; the server binary is /usr/bin/weed.
IMAGE_PROGRAMS = {"chrislusf/seaweedfs": {"wget", "curl", "weed"}}
# No longer published (Docker Hub removed minio/minio in 2026; images stopped in October 2025).
UNPUBLISHED_IMAGES = ("minio/minio", "quay.io/minio/minio", "minio/mc", "bitnami/minio")
PINNED_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9./_-]*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def _image_pin(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference pinned by a version tag or a digest."""
    m = PINNED_IMAGE.match(image)
    assert m, f"{image}: not an image reference"
    repo, tag, digest = m["repo"], m["tag"], m["digest"]
    assert digest or (tag and re.search(r"\d", tag) and tag not in ("latest", "stable", "dev")), (
        f"{image}: pin it by a version tag or a digest"
    )
    return repo, tag, digest


def test_image_pin_check():
    assert _image_pin("chrislusf/seaweedfs:4.48") == ("chrislusf/seaweedfs", "4.48", None)
    assert _image_pin("chrislusf/seaweedfs@sha256:" + "a" * 64)[2]
    for unpinned in ("chrislusf/seaweedfs", "chrislusf/seaweedfs:latest", "x/y:stable"):
        with pytest.raises(AssertionError):
            _image_pin(unpinned)


def _flag(command: list[str], name: str) -> str | None:
    """The value of `-name=value` in a Go-style command line."""
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"-{name}=")]
    return values[-1] if values else None


def test_compose_s3_server_is_published_and_pinned():
    services = _yaml("compose.yaml")[0]["services"]
    s3 = services["s3"]
    for name, svc in services.items():
        image = svc.get("image", "")
        assert not image.startswith(UNPUBLISHED_IMAGES), f"{name}: {image} is no longer published"
    repo, tag, _digest = _image_pin(s3["image"])
    assert repo in IMAGE_PROGRAMS, f"{repo}: add the programs its image has (from its build file) to IMAGE_PROGRAMS"
    command = s3["command"]
    assert command[0] == "mini" and _flag(command, "dir") == "/data"
    assert any(v.endswith(":/data") for v in s3["volumes"]), "the data directory must be a volume"
    port = _flag(command, "s3.port")
    assert port and f"127.0.0.1:{port}:{port}" in s3["ports"]
    assert _flag(command, "ip.bind") == "0.0.0.0", "other containers reach the S3 API"
    assert _flag(command, "master.telemetry") == "false"
    # The admin keys: weed mini reads the AWS_* pair from its environment.
    assert set(s3["environment"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    # The healthcheck runs a program the image has, against the S3 gateway's own endpoint.
    kind, program, *args = s3["healthcheck"]["test"]
    assert kind == "CMD" and program in IMAGE_PROGRAMS[repo], (program, repo)
    assert f"http://127.0.0.1:{port}/healthz" in args
    # Every client of the compose file points at that server.
    for name, svc in services.items():
        env = svc.get("environment") or {}
        for key in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
            if key in env:
                assert env[key] == f"http://s3:{port}", (name, key)


def test_compose_mlflow_server_with_s3_artifacts():
    compose = _yaml("compose.yaml")[0]
    services = compose["services"]
    assert {"s3", "buckets", "mlflow"} <= set(services)
    cmd = services["mlflow"]["command"]
    assert cmd[:2] == ["mlflow", "server"]
    backend = cmd[cmd.index("--backend-store-uri") + 1]
    assert backend.startswith(("sqlite:///", "postgresql://"))
    artifacts = cmd[cmd.index("--artifacts-destination") + 1]
    assert artifacts.startswith("s3://")
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    assert services["mlflow"]["depends_on"]["buckets"]["condition"] == "service_completed_successfully"
    assert services["buckets"]["depends_on"]["s3"]["condition"] == "service_healthy"
    # The buckets everything else names: MLflow's artifacts, the retrain source, the DVC remote,
    # Ray Train's storage in the cluster files.
    buckets = set(services["buckets"]["environment"]["BUCKETS"].split())
    assert artifacts[len("s3://") :].split("/")[0] in buckets
    retrain_source = services["retrain"]["environment"]["CAJNN_RETRAIN_SOURCE"]
    assert re.search(r"s3://([^/}]+)/", retrain_source)[1] in buckets
    dvc_remote = re.search(r"url = s3://([^/\s]+)", (REPO / ".dvc" / "config").read_text())[1]
    assert {dvc_remote, "ray"} <= buckets
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
    env = {e["name"]: e for e in container["env"]}
    assert set(env) == {"PYTHONPATH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all("secretKeyRef" in env[k]["valueFrom"] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    # `cajnn retrain` imports the checkout's package (the code at CAJNN_GIT_REF), not the image's.
    assert env["PYTHONPATH"]["value"] == container["workingDir"] == "/workspace/cajnn"
    assert {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_S3_ENDPOINT_URL",
        "CAJNN_RETRAIN_SOURCE",
        "CAJNN_GIT_URL",
        "CAJNN_GIT_REF",
    } <= set(docs["ConfigMap"]["data"])
    assert docs["ConfigMap"]["data"]["CAJNN_GIT_REF"].strip()


def test_k8s_cronjob_updates_its_checkout_before_every_run():
    """The init container (runs to completion before `cajnn retrain` starts, on every run) brings
    the checkout the job works in to CAJNN_GIT_REF, from the image's copy of the script, and
    checks the ref's requirements.lock against the image's."""
    docs = {d["kind"]: d for d in _yaml("k8s/retrain-cronjob.yaml")}
    pod = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert init["image"] == main["image"]
    assert init["command"] == [
        "bash",
        "/opt/cajnn/infra/update-checkout.sh",
        main["workingDir"],
        "/opt/cajnn/requirements.lock",
    ]
    assert "WORKDIR /opt/cajnn" in (INFRA / "Dockerfile").read_text()  # where the image keeps the repository
    assert {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}} in init["envFrom"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == {m["name"]: m["mountPath"] for m in main["volumeMounts"] if m["name"] == "workspace"}
    assert main["workingDir"].startswith(mounts["workspace"] + "/")


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
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in group["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    pvcs = {d["metadata"]["name"] for d in _yaml("k8s/retrain-cronjob.yaml") if d["kind"] == "PersistentVolumeClaim"}
    assert claims <= pvcs


def _dvc_overrides(command: str) -> dict[str, str]:
    """The `-S key=value` params overrides of the `dvc exp run` inside `command` (a shell line,
    `bash -c '...'` and `ray exec FILE '...'` unwrapped)."""
    words = shlex.split(command)
    while words[0] in ("bash", "sh", "ray"):
        words = shlex.split(words[3] if words[0] == "ray" else words[words.index("-c") + 1])
    (run,) = [i for i in range(len(words) - 2) if words[i : i + 3] == ["dvc", "exp", "run"]]
    overrides = {}
    for flag, value in zip(words[run + 3 :], words[run + 4 :]):
        if flag == "-S":
            key, sep, val = value.partition("=")
            assert sep, value
            overrides[key] = val
    return overrides


def _params_key_exists(dotted: str) -> bool:
    node = yaml.safe_load((REPO / "params.yaml").read_text())
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_dvc_overrides_helper():
    assert _dvc_overrides("bash -c 'cd /w && dvc exp run -S a.b=1 -S \"c.d=$X\"'") == {"a.b": "1", "c.d": "$X"}
    assert _dvc_overrides('ray exec c.yaml "cd ~/c && A=$A dvc exp run -S t.e="') == {"t.e": ""}
    assert _params_key_exists("train.storage_endpoint_url") and not _params_key_exists("train.storage_bucket")


@pytest.mark.parametrize("where", ["rayjob", "ray up"])
def test_ray_clusters_keep_checkpoints_in_s3(where):
    """Both cluster files run the pipeline with Ray Train's storage on S3 (train.storage_path
    s3://..., train.storage_endpoint_url set) through params overrides the stages really read."""
    if where == "rayjob":
        (job,) = _yaml("ray/rayjob.yaml")
        overrides = _dvc_overrides(job["spec"]["entrypoint"])
    else:
        overrides = _dvc_overrides(_cluster_run_command())
    assert all(_params_key_exists(k) for k in overrides), (
        f"not in params.yaml: {[k for k in overrides if not _params_key_exists(k)]}"
    )
    assert overrides["ray.address"] == "auto"
    assert re.fullmatch(r"s3://[a-zA-Z0-9.-]+/\S+", overrides["train.storage_path"]), overrides
    endpoint = overrides["train.storage_endpoint_url"]
    if where == "rayjob":
        # Expanded on the head from the ConfigMap the head and worker pods load.
        assert endpoint == "$AWS_ENDPOINT_URL"
        config = {d["metadata"]["name"]: d for d in _yaml("k8s/retrain-cronjob.yaml") if d["kind"] == "ConfigMap"}
        spec = job["spec"]["rayClusterSpec"]
        for pod in [spec["headGroupSpec"]["template"]["spec"]] + [
            g["template"]["spec"] for g in spec["workerGroupSpecs"]
        ]:
            container = pod["containers"][0]
            (ref,) = [e["configMapRef"]["name"] for e in container["envFrom"]]
            assert re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", config[ref]["data"]["AWS_ENDPOINT_URL"])
            assert {e["name"] for e in container["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
            # Every Ray process imports the checkout on the shared volume, like the driver.
            (pythonpath,) = [e["value"] for e in container["env"] if e["name"] == "PYTHONPATH"]
            assert (
                pythonpath == "/workspace/cajnn"
                and {"name": "workspace", "mountPath": "/workspace"} in container["volumeMounts"]
            )
    else:
        # Empty = AWS S3 itself (the cluster is on AWS); else an S3-compatible endpoint.
        assert endpoint == "" or re.fullmatch(r"https?://\S+", endpoint)
        # Ray Train's worker writes the checkpoints: the GPU node needs S3 access too (`ray up`
        # gives only the head an instance profile by default).
        (cluster,) = _yaml("ray/cluster.yaml")
        for name, node in cluster["available_node_types"].items():
            if name != cluster["head_node_type"]:
                assert node["node_config"]["IamInstanceProfile"], name


def test_ray_up_cluster_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_yaml("ray/cluster.yaml")[0]))


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
    # Before every run (a failed ExecStartPre= stops the unit): the checkout at
    # WorkingDirectory= is brought to CAJNN_GIT_REF, which the EnvironmentFile holds.
    pre = shlex.split(service["Service"]["ExecStartPre"])
    workdir = service["Service"]["WorkingDirectory"]
    assert pre == ["/bin/bash", f"{workdir}/infra/update-checkout.sh", workdir]
    assert service["Service"]["ExecStart"].split()[1:] == ["retrain"]
    assert "CAJNN_GIT_REF" in _env_example()
    timer = _unit("systemd/cajnn-retrain.timer")
    assert "Mon" in timer["Timer"]["OnCalendar"] or timer["Timer"]["OnCalendar"] == "weekly"
    assert (INFRA / "systemd" / timer["Timer"]["Unit"]).is_file()
    assert timer["Install"]["WantedBy"] == "timers.target"


def _cron_line() -> str:
    (line,) = [
        ln
        for ln in (INFRA / "cron" / "cajnn-retrain").read_text().splitlines()
        if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]
    ]
    return line


def test_cron_line_is_weekly():
    minute, hour, dom, month, dow, user, _ = _cron_line().split(None, 6)
    assert minute.isdigit() and hour.isdigit() and dom == month == "*" and dow != "*" and user == "cajnn"


def test_cron_line_updates_the_checkout_before_retraining():
    """`&&` all the way: the environment (CAJNN_GIT_REF) is loaded, the checkout updated, and only
    then `make retrain`; a failed update means no run."""
    steps = [s.strip() for s in _cron_line().split(None, 6)[6].split("&&")]
    cd = next(i for i, s in enumerate(steps) if s.startswith("cd "))
    checkout = steps[cd].split()[1]
    env = next(i for i, s in enumerate(steps) if s.startswith(". /etc/"))
    update = next(i for i, s in enumerate(steps) if "update-checkout.sh" in s)
    retrain = next(i for i, s in enumerate(steps) if s.startswith("make retrain"))
    assert cd < env < update < retrain
    assert shlex.split(steps[update])[:3] == ["bash", "infra/update-checkout.sh", checkout]
    assert all(op == "&&" for op in re.findall(r"&&|\|\||;", _cron_line()))


def _env_example() -> dict[str, str]:
    lines = [ln for ln in (INFRA / "env.example").read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_dockerfile():
    lines = [ln for ln in (INFRA / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM ")
    for line in lines:
        if line.startswith("COPY "):
            *sources, _dest = line.split()[1:]
            assert all((REPO / s).exists() for s in sources), line
    assert any(ln.startswith("USER ") and "root" not in ln for ln in lines)
    assert "scripts/setup.sh" in (INFRA / "Dockerfile").read_text() and (REPO / "scripts" / "setup.sh").is_file()
    # apt packages: rsync (`ray up` in Docker mode rsyncs file_mounts into the container with
    # `docker exec`), git (infra/update-checkout.sh).
    text = (INFRA / "Dockerfile").read_text().replace("\\\n", " ")
    installed = set()
    for run in re.findall(r"^RUN (.*)$", text, re.M):
        for part in run.split("&&"):
            words = part.split()
            if words[:2] == ["apt-get", "install"] or words[1:3] == ["apt-get", "install"]:
                installed |= {
                    w for w in words if not w.startswith("-") and w not in ("apt-get", "install") and "=" not in w
                }
    assert {"rsync", "git"} <= installed, installed
    ignored = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert "infra" not in ignored and "infra/" not in ignored  # the image carries infra/update-checkout.sh


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
            for v in node.values():
                walk(v, where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    for path in INFRA.rglob("*.y*ml"):
        for doc in _yaml(path.relative_to(INFRA).as_posix()):
            walk(doc, path.name)


def _git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _update(checkout: Path, ref: str | None, url: str | None, *lock: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAJNN_GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    if ref is not None:
        env["CAJNN_GIT_REF"] = ref
    if url is not None:
        env["CAJNN_GIT_URL"] = url
    return subprocess.run(
        ["bash", str(INFRA / "update-checkout.sh"), str(checkout), *map(str, lock)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_update_checkout_script(tmp_path):
    """What the CronJob's init container, ExecStartPre= and the cron line run before each
    retraining: clone on first use, then fetch + reset to CAJNN_GIT_REF (tag or branch), keeping
    ignored files (data/, the retrain state); refuse a ref whose requirements.lock is not the
    image's; refuse to run without a ref."""
    origin = tmp_path / "origin"
    origin.mkdir()
    _git("init", "-q", "-b", "main", cwd=origin)
    (origin / ".gitignore").write_text("/data/\n")
    (origin / "requirements.lock").write_text("torch==1\n")
    (origin / "code.py").write_text("VERSION = 1\n")
    _git("add", "-A", cwd=origin)
    _git("commit", "-q", "-m", "v1", cwd=origin)
    _git("tag", "v1", cwd=origin)
    v1 = _git("rev-parse", "HEAD", cwd=origin)
    (origin / "code.py").write_text("VERSION = 2\n")
    (origin / "requirements.lock").write_text("torch==2\n")
    _git("commit", "-q", "-am", "v2", cwd=origin)
    v2 = _git("rev-parse", "HEAD", cwd=origin)
    url = f"file://{origin}"
    checkout = tmp_path / "workspace" / "cajnn"

    assert _update(checkout, "v1", None).returncode != 0  # no checkout yet and no URL to clone from
    done = _update(checkout, "v1", url)
    assert done.returncode == 0, done.stderr
    assert _git("rev-parse", "HEAD", cwd=checkout) == v1 and (checkout / "code.py").read_text() == "VERSION = 1\n"
    assert _git("rev-parse", "--is-shallow-repository", cwd=checkout) == "true"

    # A later run: local edits to tracked files go, ignored files (data/, the retrain state) stay.
    (checkout / "data" / "retrain").mkdir(parents=True)
    (checkout / "data" / "retrain" / "state.json").write_text("{}")
    (checkout / "code.py").write_text("edited by hand\n")
    done = _update(checkout, "main", None)
    assert done.returncode == 0, done.stderr
    assert _git("rev-parse", "HEAD", cwd=checkout) == v2 and (checkout / "code.py").read_text() == "VERSION = 2\n"
    assert (checkout / "data" / "retrain" / "state.json").read_text() == "{}"
    assert "main" in done.stdout and v2[:7] in done.stdout

    # The image's lock: same as the ref's -> fine; another -> the job stops, saying why.
    image_lock = tmp_path / "image.lock"
    image_lock.write_text("torch==2\n")
    assert _update(checkout, "main", url, image_lock).returncode == 0
    image_lock.write_text("torch==1\n")
    refused = _update(checkout, "main", url, image_lock)
    assert refused.returncode == 1 and "requirements.lock" in refused.stderr

    # Without a ref nothing happens.
    missing = _update(checkout, None, url)
    assert missing.returncode != 0 and "CAJNN_GIT_REF" in missing.stderr
    assert _git("rev-parse", "HEAD", cwd=checkout) == v2


def test_readme_explains_every_file_and_variable():
    readme = (INFRA / "README.md").read_text()
    for path in INFRA.rglob("*"):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(INFRA).as_posix()
            assert rel in readme or path.name in readme or rel.rsplit(".", 1)[0] in readme, rel
    for var in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "CAJNN_RETRAIN_SOURCE",
        "CAJNN_GIT_REF",
        "CAJNN_GIT_URL",
    ):
        assert var in readme, var
    # Every variable infra/ asks for by name is explained, and none of the old server's remains.
    named = set(_env_example())
    for text in (INFRA / "compose.yaml").read_text(), (INFRA / "k8s" / "retrain-cronjob.yaml").read_text():
        named |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    assert [v for v in sorted(named) if v not in readme] == []
    assert "MINIO_ROOT" not in readme and not any(
        "MINIO_ROOT" in p.read_text() for p in INFRA.rglob("*") if p.is_file()
    )


def test_make_retrain_target():
    text = (REPO / "Makefile").read_text()
    assert "retrain" in _make_targets()
    body = text.split("\nretrain:", 1)[1].split("\n\n", 1)[0]
    assert "cajnn retrain" in body and re.search(r"^\.PHONY:.*\bretrain\b", text, re.MULTILINE)
