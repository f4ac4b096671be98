"""Scheduled retraining on new web-platform degradation data (`cajnn retrain`, `make retrain`).

One run:

1. **check** `register.retrain.source` (``s3://bucket/prefix/`` or a folder) for objects not
   seen before -- keys and ETags are kept in ``<workdir>/state.json`` -- and return at once when
   there is nothing new (one LIST request per 1,000 keys; no torch, MLflow or DVC is loaded);
2. **add the data**, by where it lies in the source:

   - ``samples/``: JPEGs as the platform serves them. A profile (``samples_profile``) is fitted
     to every sample seen so far (:mod:`cajnn.degradation.profile_fit`, as `cajnn profile fit`)
     and the run trains with it;
   - ``pairs/originals/`` + ``pairs/copies/``: real pairs, downloaded under ``pairs_local`` and
     degraded as ``degrade.pairs`` (:mod:`cajnn.data.pairs`);
   - ``profiles_file``: hand-written profiles::

       profiles:                      # same keys as degrade.profiles in params.yaml
         forum_2025: {resize: pillow_bicubic, scale: 4, qf_min: 35, qf_max: 70}
       train_with: forum_2025         # optional; default: the last profile listed

   - any other image: a new HR image, downloaded under ``images_dir`` (fetched as
     ``local:<images_dir>``) and degraded with the profile in use;

3. **fine-tune the champion** as a DVC experiment: its weights are downloaded from the registry
   and ``conf/preset/retrain.yaml`` (git-ignored) is written = the preset in use +
   ``conf/preset/finetune.yaml`` (fewer iterations, lower lr) + the new data + the profile +
   ``train.init_weights`` + the champion's architecture + ``register.retrain.overrides``; then
   ``dvc exp run --temp -f -n retrain-<time> -S preset=retrain`` runs the six stages in a
   temporary copy, so the checkout's params.yaml, dvc.lock and outputs stay as they were and
   ``dvc exp show`` lists the retrain with its parameters and metrics;
4. the **register** stage scores the new version and the champion on the frozen evaluation sets
   and promotes per the policy (cajnn/serving/registry.py);
5. **record**: one JSON line per run in ``register.retrain.log`` (no-op checks included), tags
   ``retrain.*`` on the new model version (the profile trained with among them), the pipeline's
   output in ``<workdir>/logs/``; the state is committed only when the pipeline succeeded, so a
   failed run is retried next time.

Paths the experiment reads from the checkout (the downloaded data, the champion's weights, a
sqlite MLflow store, the Ray checkpoints) are given to it as absolute paths: the temporary copy
holds only what git tracks.

A lock (``<workdir>/retrain.lock``) serialises runs: a second ``cajnn retrain`` exits with
code 75 and says who holds it (or waits ``--wait`` seconds first).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cajnn.atomic import write_atomic, write_json_atomic, write_text_atomic
from cajnn.config import ConfigError, Params, ProfileConfig, deep_merge, from_dict, load_params, read_yaml
from cajnn.config.compose import compose_params, known_presets, preset_dir
from cajnn.config.register import RetrainConfig
from cajnn.experiments import experiment_file, experiment_overrides, run_experiment

GENERATED_PRESET = "retrain"
STATE_VERSION = 1
EXIT_BUSY = 75  # EX_TEMPFAIL: another retrain holds the lock; try again later
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class RetrainError(Exception):
    """A retrain could not be done (bad source, configuration, failed pipeline)."""


class RetrainBusy(RetrainError):
    """Another retrain holds the lock."""


# --------------------------------------------------------------------------- sources


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise RetrainError(f"source {uri!r}: expected s3://bucket/prefix/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def _s3_client(endpoint_url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60),
    )


def _safe_relpath(key: str) -> str | None:
    """A key relative to the prefix, or None when it cannot be a file path here."""
    p = PurePosixPath(key)
    if not key or key.endswith("/") or p.is_absolute() or ".." in p.parts or any(s.startswith(".") for s in p.parts):
        return None
    return p.as_posix()


def list_source(source: str, endpoint_url: str = "") -> dict[str, str]:
    """Every object under the source: {path relative to the prefix: ETag}. For a folder the
    'ETag' is size + modification time (cheap; a rewritten file counts as new)."""
    out: dict[str, str] = {}
    if source.startswith("s3://"):
        bucket, prefix = _split_s3(source)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = _s3_client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = _safe_relpath(obj["Key"][len(prefix) :])
                    if rel is not None:
                        out[rel] = obj.get("ETag", "").strip('"') or f"{obj.get('Size')}"
        except (BotoCoreError, ClientError) as exc:
            raise RetrainError(f"cannot list {source}: {exc}") from None
        return out
    folder = Path(source)
    if not folder.is_dir():
        raise RetrainError(f"source {source!r} is neither s3://bucket/prefix/ nor an existing folder")
    for path in folder.rglob("*"):
        if path.is_file():
            rel = _safe_relpath(path.relative_to(folder).as_posix())
            if rel is not None:
                st = path.stat()
                out[rel] = f"{st.st_size}-{st.st_mtime_ns}"
    return out


def fetch_object(source: str, endpoint_url: str, rel: str, dst: Path, client=None) -> Path:
    """Copy one object of the source to `dst` atomically (:func:`cajnn.atomic.write_atomic`)."""
    if source.startswith("s3://"):
        bucket, prefix = _split_s3(source)
        s3 = client or _s3_client(endpoint_url)
        write_atomic(dst, lambda fh: s3.download_fileobj(bucket, prefix + rel, fh))
    else:
        import shutil

        with open(Path(source) / rel, "rb") as src:  # opened first: a missing file leaves no trace
            write_atomic(dst, lambda fh: shutil.copyfileobj(src, fh))
    return dst


# --------------------------------------------------------------------------- state and lock


def load_state(path: Path) -> dict:
    if not path.is_file():
        return {"version": STATE_VERSION, "seen": {}, "profiles": {}, "train_with": None, "base_preset": None}
    state = json.loads(path.read_text())
    if state.get("version") != STATE_VERSION:
        raise RetrainError(f"{path}: unknown state version {state.get('version')!r}")
    return state


def append_log(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:  # one short write per line: lines never interleave
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


@contextlib.contextmanager
def retrain_lock(workdir: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold `<workdir>/retrain.lock` (fcntl, released by the kernel if the process dies);
    `wait` seconds to get it, else :class:`RetrainBusy` naming the holder."""
    from filelock import FileLock, Timeout

    workdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(workdir / "retrain.lock"))
    holder = workdir / "retrain.lock.holder.json"
    try:
        lock.acquire(timeout=max(wait, 0.0), poll_interval=0.5)
    except Timeout:
        try:
            info = json.loads(holder.read_text())
            who = f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"
        except (OSError, ValueError):
            who = "another process"
        raise RetrainBusy(
            f"another `cajnn retrain` is running ({who}; lock {workdir / 'retrain.lock'}); "
            f"nothing done -- try again later or pass --wait SECONDS"
        ) from None
    try:
        write_json_atomic(holder, {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "argv": sys.argv})
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


# --------------------------------------------------------------------------- what is new


@dataclass
class Check:
    source: str
    listed: int
    new_images: dict[str, str] = field(default_factory=dict)  # rel -> etag
    new_samples: dict[str, str] = field(default_factory=dict)  # under samples_dir/
    new_pairs: dict[str, str] = field(default_factory=dict)  # under pairs_dir/
    profiles: tuple[str, str] | None = None  # (rel, etag) when the profiles file is new/changed
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def anything_new(self) -> bool:
        return bool(self.new_images or self.new_samples or self.new_pairs or self.profiles)

    def summary(self, profiles_file: str) -> str:
        parts = [
            f"{len(v)} new {what}"
            for what, v in (
                ("image(s)", self.new_images),
                ("served sample(s)", self.new_samples),
                ("pair file(s)", self.new_pairs),
            )
            if v
        ]
        return ", ".join(parts + ([f"new {profiles_file}"] if self.profiles else []))


def check_source(cfg: RetrainConfig, state: dict) -> Check:
    t0 = time.perf_counter()
    listing = list_source(cfg.source, cfg.endpoint_url)
    seen = state["seen"].get(cfg.source, {})
    chk = Check(cfg.source, len(listing))
    for rel, etag in sorted(listing.items()):
        if seen.get(rel) == etag:
            continue
        top = PurePosixPath(rel).parts[0]
        if rel == cfg.profiles_file:
            chk.profiles = (rel, etag)
        elif PurePosixPath(rel).suffix.lower() not in IMAGE_SUFFIXES:
            chk.ignored.append(rel)
        elif top == cfg.samples_dir:
            chk.new_samples[rel] = etag
        elif top == cfg.pairs_dir:
            chk.new_pairs[rel] = etag
        else:
            chk.new_images[rel] = etag
    chk.seconds = time.perf_counter() - t0
    return chk


def parse_profiles(text: str, where: str) -> tuple[dict[str, dict], str | None]:
    """A profiles file -> ({name: profile dict}, train_with). Each profile is checked with the
    same rules as degrade.profiles."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise RetrainError(f"{where}: expected a mapping with 'profiles' (and optionally 'train_with')")
    unknown = sorted(set(data) - {"profiles", "train_with"})
    if unknown:
        raise RetrainError(f"{where}: unknown key(s) {unknown}; expected 'profiles' and optionally 'train_with'")
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict) or not profiles:
        raise RetrainError(f"{where}: 'profiles' must map profile names to profiles")
    for name, prof in profiles.items():
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", str(name)):
            raise RetrainError(f"{where}: profile name {name!r}: use letters, digits, _ . -")
        try:
            from_dict(ProfileConfig, prof, f"{where}: profiles.{name}")
        except ConfigError as exc:
            raise RetrainError(str(exc)) from None
    train_with = data.get("train_with") or list(profiles)[-1]
    if train_with not in profiles:
        raise RetrainError(f"{where}: train_with {train_with!r} is not one of its profiles {list(profiles)}")
    return {str(k): dict(v) for k, v in profiles.items()}, str(train_with)


# --------------------------------------------------------------------------- the generated preset


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
    d[last] = value


def model_section(champion_config: dict, base_model: dict) -> dict:
    """`train.model` that rebuilds the champion's architecture (preset + differing fields)."""
    from cajnn.archs.presets import PRESETS

    preset = base_model.get("preset", "cpu-small")
    full = {**PRESETS.get(preset, {}), **(base_model.get("overrides") or {})}
    if full == champion_config:
        return {"preset": preset, "overrides": dict(base_model.get("overrides") or {})}
    return {
        "preset": preset,
        "overrides": {k: v for k, v in champion_config.items() if PRESETS.get(preset, {}).get(k) != v},
    }


def _overlay(path: Path) -> dict:
    """A preset file's values without its own `preset:` name (the generated preset has its own)."""
    data = read_yaml(path) or {}
    data.pop("preset", None)
    return data


def build_preset(
    root: Path, base: str, cfg: RetrainConfig, state: dict, init_weights: str, champion_config: dict | None
) -> dict:
    """conf/preset/retrain.yaml: base preset + fine-tuning overlay + new data + warm start."""
    presets = preset_dir(root)
    for name in (base, cfg.preset):
        if not (presets / f"{name}.yaml").is_file():
            raise RetrainError(
                f"preset {name!r}: no {presets / f'{name}.yaml'} (known: {', '.join(known_presets(root)) or 'none'})"
            )
    gen = deep_merge(_overlay(presets / f"{base}.yaml"), _overlay(presets / f"{cfg.preset}.yaml"))
    eff = from_dict(Params, compose_params(root, [f"preset={base}"]))
    # absolute `local:` paths: the experiment runs in a temporary copy without the downloads
    sources, pairs = list(eff.fetch.sources), list(eff.degrade.pairs)
    images = root / cfg.images_dir
    if images.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.rglob("*") if p.is_file()):
        dataset = f"{eff.fetch.dest.rstrip('/')}/{images.name}"
        sources.append(f"local:{images.resolve()}")
        gen.setdefault("degrade", {})["inputs"] = [*[i for i in eff.degrade.inputs if i != dataset], dataset]
    pairs_local = root / cfg.pairs_local
    if (pairs_local / "originals").is_dir() and (pairs_local / "copies").is_dir():
        sources.append(f"local:{pairs_local.resolve()}")
        pairs.append(f"{eff.fetch.dest.rstrip('/')}/{pairs_local.name}")
        gen.setdefault("degrade", {})["pairs"] = list(dict.fromkeys(pairs))
    if sources != eff.fetch.sources:
        gen.setdefault("fetch", {})["sources"] = list(dict.fromkeys(sources))
    if state.get("profiles"):
        clash = sorted(
            n
            for n, p in state["profiles"].items()
            if n in eff.degrade.profiles and from_dict(ProfileConfig, p) != eff.degrade.profiles[n]
        )
        if clash:
            raise RetrainError(
                f"new profile(s) {clash} differ from the profiles of that name in conf/config.yaml / "
                f"conf/preset/{base}.yaml; give new web-platform profiles new names"
            )
        deg = gen.setdefault("degrade", {})
        deg["profiles"] = {**(deg.get("profiles") or {}), **state["profiles"]}
        if state.get("train_with"):
            deg["profile"] = state["train_with"]
    train = gen.setdefault("train", {})
    train["init_weights"] = init_weights
    if champion_config is not None:
        base_model = deep_merge(
            {"preset": eff.train.model.preset, "overrides": eff.train.model.overrides},
            (gen.get("train") or {}).get("model") or {},
        )
        train["model"] = model_section(champion_config, base_model)
    for dotted, value in cfg.overrides.items():
        _set_dotted(gen, dotted, value)
    return {"preset": GENERATED_PRESET, **gen}


def write_preset(root: Path, gen: dict, header: str) -> Params:
    """Write conf/preset/retrain.yaml after checking that params composed with it load (they are
    returned); when they do not, the previous file is kept and nothing changes."""
    preset_file = preset_dir(root) / f"{GENERATED_PRESET}.yaml"
    previous = preset_file.read_text() if preset_file.is_file() else None
    write_text_atomic(preset_file, "# @package _global_\n" + header + yaml.safe_dump(gen, sort_keys=False))
    try:
        return from_dict(Params, compose_params(root, [f"preset={GENERATED_PRESET}"]))
    except ConfigError as exc:
        if previous is None:
            preset_file.unlink()
        else:
            write_text_atomic(preset_file, previous)
        raise RetrainError(f"the generated preset is invalid: {exc}") from None


# --------------------------------------------------------------------------- the run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Options:
    source: str | None = None
    endpoint_url: str | None = None
    wait: float = 0.0
    force: bool = False
    check_only: bool = False


def retrain(params_file: Path, opts: Options = Options(), echo: Callable[[str], None] = print) -> dict:
    """One retraining run (see the module docstring); returns the entry written to the log."""
    t0 = time.perf_counter()
    params_file = params_file.resolve()
    root = params_file.parent
    params = load_params(params_file)
    cfg = params.register.retrain
    cfg = replace(cfg, source=opts.source or cfg.source, endpoint_url=opts.endpoint_url or cfg.endpoint_url)
    if not cfg.source:
        raise RetrainError("no source to check: set register.retrain.source in params.yaml or pass --source")
    if "://" not in cfg.source and not Path(cfg.source).is_absolute():
        cfg = replace(cfg, source=str(root / cfg.source))  # a folder relative to the project root
    workdir = root / cfg.workdir
    log_file = root / cfg.log
    entry: dict[str, Any] = {"time": _now(), "source": cfg.source, "host": socket.gethostname(), "pid": os.getpid()}
    with retrain_lock(workdir, opts.wait):
        state = load_state(workdir / "state.json")
        chk = check_source(cfg, state)
        entry.update(
            listed=chk.listed,
            check_seconds=round(chk.seconds, 3),
            new_images=sorted(chk.new_images),
            new_samples=len(chk.new_samples),
            new_pair_files=len(chk.new_pairs),
            profiles_file_changed=chk.profiles is not None,
        )
        if chk.ignored:
            entry["ignored"] = chk.ignored
        if not chk.anything_new and not opts.force:
            entry.update(status="nothing new", seconds=round(time.perf_counter() - t0, 3))
            echo(f"[retrain] nothing new in {cfg.source} ({chk.listed} objects, checked in {chk.seconds:.2f} s)")
            append_log(log_file, entry)
            return entry
        echo(f"[retrain] {chk.summary(cfg.profiles_file)} in {cfg.source}")
        if opts.check_only:
            entry.update(status="new data (check only)", seconds=round(time.perf_counter() - t0, 3))
            append_log(log_file, entry)
            return entry
        try:
            return _retrain(root, params_file, params, cfg, state, chk, entry, t0, echo)
        except BaseException as exc:
            entry.update(
                status="failed", error=f"{type(exc).__name__}: {exc}", seconds=round(time.perf_counter() - t0, 3)
            )
            append_log(log_file, entry)
            raise


def _strip_top(rel: str) -> str:
    return PurePosixPath(*PurePosixPath(rel).parts[1:]).as_posix()


def fit_samples(folder: Path, name: str, scale: int, out: Path) -> dict:
    """Fit a profile to every sample under `folder`; the evidence goes to `out` (YAML). Returns
    the profile as a dict (degrade.profiles syntax)."""
    from cajnn.degradation.profile_fit import fit_profile, read_folder_facts

    files, skipped = read_folder_facts(folder)
    try:
        result = fit_profile(files, skipped, scale=scale)
    except ValueError as exc:
        raise RetrainError(f"{folder}: {exc}") from None
    mapping = result.as_yaml_mapping(name)
    write_text_atomic(out, yaml.safe_dump(mapping, sort_keys=False))
    return mapping["profiles"][name]


def _retrain(root, params_file, params, cfg, state, chk, entry, t0, echo) -> dict:
    workdir = root / cfg.workdir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # 2. add the data
    client = _s3_client(cfg.endpoint_url) if cfg.source.startswith("s3://") else None
    for rel in chk.new_images:
        fetch_object(cfg.source, cfg.endpoint_url, rel, root / cfg.images_dir / rel, client)
    for rel in chk.new_samples:
        fetch_object(cfg.source, cfg.endpoint_url, rel, workdir / "samples" / _strip_top(rel), client)
    for rel in chk.new_pairs:
        fetch_object(cfg.source, cfg.endpoint_url, rel, root / cfg.pairs_local / _strip_top(rel), client)
    profiles, train_with = dict(state.get("profiles") or {}), state.get("train_with")
    if chk.profiles:
        path = fetch_object(
            cfg.source, cfg.endpoint_url, chk.profiles[0], workdir / "incoming" / cfg.profiles_file, client
        )
        new_profiles, train_with = parse_profiles(path.read_text(), f"{cfg.source}{chk.profiles[0]}")
        profiles.update(new_profiles)
        entry["new_profiles"] = sorted(new_profiles)
        entry["train_with"] = train_with
    # 3. the base preset, the fitted profile, warm start from the champion
    raw = read_yaml(params_file) or {}
    base = cfg.base_preset or (
        raw.get("preset", "embedded") if raw.get("preset") != GENERATED_PRESET else state.get("base_preset")
    )
    if not base:
        raise RetrainError(
            "params.yaml selects the generated preset `retrain` but the state does not record its "
            "base; set register.retrain.base_preset"
        )
    if chk.new_samples:
        fit_file = workdir / "fits" / f"{cfg.samples_profile}-{stamp}.yaml"
        scale = from_dict(Params, compose_params(root, [f"preset={base}"])).degrade.selected_profile().scale
        profiles[cfg.samples_profile] = fit_samples(workdir / "samples", cfg.samples_profile, scale, fit_file)
        train_with = cfg.samples_profile
        entry.update(
            fitted_profile=cfg.samples_profile, fit=fit_file.relative_to(root).as_posix(), train_with=train_with
        )
        echo(
            f"[retrain] profile {cfg.samples_profile!r} fitted to the served samples: "
            f"{json.dumps(profiles[cfg.samples_profile], sort_keys=True)} ({entry['fit']})"
        )
    init_weights, champion_config, champion = "", None, None
    import mlflow

    from cajnn.serving.registry import champion_version, download_weights
    from cajnn.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(params.mlflow, root, create=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mv = champion_version(params.register.model_name)
    if mv is not None:
        champion = int(mv.version)
        weights = download_weights(
            f"models:/{params.register.model_name}/{mv.version}", workdir / f"champion-v{mv.version}"
        )
        init_weights = str(weights.resolve())  # absolute: the experiment's copy has no data/retrain
        champion_config = json.loads(weights.with_suffix(".json").read_text())
        echo(f"[retrain] warm start from {params.register.model_name} version {mv.version} (champion)")
    else:
        echo(f"[retrain] no champion of {params.register.model_name!r} yet: training from scratch")
    entry.update(champion_before=champion, warm_start=init_weights or None, base_preset=base)
    pending = {**state, "profiles": profiles, "train_with": train_with, "base_preset": base}
    gen = build_preset(root, base, cfg, pending, init_weights, champion_config)
    header = (
        f"# GENERATED by `cajnn retrain` at {_now()}: conf/preset/{base}.yaml + conf/preset/{cfg.preset}.yaml\n"
        f"# + new web-platform data from {cfg.source} + warm start; rewritten by every retrain.\n"
    )
    eff = write_preset(root, gen, header)
    profile_name = eff.degrade.profile
    entry["profile"] = {
        "name": profile_name,
        **{k: v for k, v in asdict(eff.degrade.selected_profile()).items() if v is not None},
    }
    # 4. the pipeline as a DVC experiment (the register stage applies the promotion policy)
    name = f"retrain-{stamp}"
    log_path = workdir / "logs" / f"{name}.log"
    entry.update(experiment=name, pipeline_log=log_path.relative_to(root).as_posix())
    t_pipe = time.perf_counter()
    preset_file = (preset_dir(root) / f"{GENERATED_PRESET}.yaml").relative_to(root).as_posix()
    rc = run_experiment(
        root,
        name,
        [f"preset={GENERATED_PRESET}", *experiment_overrides(root, params)],
        log_path,
        echo,
        copy_paths=(preset_file,),
    )
    entry["pipeline_seconds"] = round(time.perf_counter() - t_pipe, 1)
    if rc != 0:
        raise RetrainError(
            f"`dvc exp run` failed with exit code {rc}; see {log_path} (the new data stays unseen and will be retried)"
        )
    record = json.loads(experiment_file(root, name, params.register.out))
    d = record["decision"]
    entry.update(
        status="retrained",
        version=record["version"],
        promoted=d["promote"],
        reason=d["reason"],
        champion_after=record["champion"],
        challenger_mean_psnr_y=d["challenger_mean"],
        champion_mean_psnr_y=d["champion_mean"],
    )
    # 5. record
    client_ml = mlflow.MlflowClient()
    for key, value in {
        "retrain.time": entry["time"],
        "retrain.source": cfg.source,
        "retrain.experiment": name,
        "retrain.new_images": str(len(chk.new_images)),
        "retrain.new_samples": str(len(chk.new_samples)),
        "retrain.new_pair_files": str(len(chk.new_pairs)),
        "retrain.new_profiles": ",".join(entry.get("new_profiles", [])),
        "retrain.profile": profile_name,
        "retrain.profile_config": json.dumps(entry["profile"], sort_keys=True),
        "retrain.warm_start": f"version {champion}" if champion else "none (from scratch)",
        "retrain.base_preset": base,
        "retrain.log": entry["pipeline_log"],
    }.items():
        client_ml.set_model_version_tag(params.register.model_name, str(record["version"]), key, value)
    seen = state["seen"].setdefault(cfg.source, {})
    seen.update(chk.new_images)
    seen.update(chk.new_samples)
    seen.update(chk.new_pairs)
    if chk.profiles:
        seen[chk.profiles[0]] = chk.profiles[1]
    state.update(
        profiles=profiles,
        train_with=train_with,
        base_preset=base,
        last_run=entry["time"],
        last_version=record["version"],
        last_experiment=name,
    )
    write_json_atomic(workdir / "state.json", state)
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    append_log(root / cfg.log, entry)
    echo(
        f"[retrain] experiment {name}: version {record['version']} "
        + ("promoted to champion" if d["promote"] else f"not promoted; champion stays version {record['champion']}")
        + f" ({d['reason']}); `dvc exp show` lists it"
    )
    return entry
