"""What the embedded default's training budget buys: train the embedded recipe (params.yaml's
`degrade` and `train` sections, or a variant of them) for several seeds with the `train`
stage's own `Trainer`, fed from memory, and print the PSNR-Y gain over MATLAB bicubic on the
held-out photos (chelsea + coffee) at QF 10 / 20 / 40 per seed, their mean and spread.

    .venv/bin/python benchmarks/sweep_embedded.py                         # params.yaml, seeds 0 1 2
    .venv/bin/python benchmarks/sweep_embedded.py --seeds 0 --iterations 2000
    .venv/bin/python benchmarks/sweep_embedded.py --init-scale 1 --min-patch-std 0   # issue-12 "before" recipe
    .venv/bin/python benchmarks/sweep_embedded.py --set train.batch_size=12 --set degrade.qualities_per_image=8

`--set SECTION.KEY=VALUE` changes any `degrade` / `train` parameter (YAML value). The patch set
is made in-process with the `degrade` stage's function (one shard per photo, as the stage);
the model is the `train` stage's `Trainer` (seeded by `train.seed`, in-memory sampling as on a
Ray Train worker). The Ray path gives the same weights (tests/training/test_reproducible.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cajnn.config import DegradeConfig, TrainConfig, from_dict, load_params, to_dict  # noqa: E402
from cajnn.data.image_io import save_rgb  # noqa: E402
from cajnn.data.sample import SAMPLE_IMAGES, load_sample  # noqa: E402
from cajnn.data.shards import degrade_to_shard, load_patch_set  # noqa: E402
from cajnn.evaluation import bicubic_method, evaluate_sets, model_method  # noqa: E402
from cajnn.training.trainer import Trainer, in_memory_batches, run  # noqa: E402

QUALITIES = (10, 20, 40)


def gains(net: torch.nn.Module, holdout: Path) -> dict[int, float]:
    """PSNR-Y(CAJNN) - PSNR-Y(bicubic) per QF on the held-out photos (paper protocol)."""
    net.eval()
    rep = evaluate_sets({"bicubic": bicubic_method(4), "cajnn": model_method(net)}, {"h": holdout}, QUALITIES)
    r = rep.results["h"]
    return {q: r[q]["cajnn"].psnr_y - r[q]["bicubic"].psnr_y for q in QUALITIES}


def reset_init(net: torch.nn.Module) -> None:
    """PyTorch's default conv initialisation everywhere (the recipe before issue 12)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()


def apply_sets(degrade: DegradeConfig, train: TrainConfig, pairs: list[str]) -> tuple[DegradeConfig, TrainConfig]:
    sections = {"degrade": to_dict(degrade), "train": to_dict(train)}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise SystemExit(f"--set {pair!r}: use degrade.KEY=VALUE or train.KEY=VALUE")
        target = sections[section]
        *parents, leaf = name.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = yaml.safe_load(value)
    return from_dict(DegradeConfig, sections["degrade"]), from_dict(TrainConfig, sections["train"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, help="train.iterations (and the cosine period)")
    ap.add_argument(
        "--init-scale",
        type=float,
        choices=[0.1, 1.0],
        default=0.1,
        help="0.1: ESRGAN's scaled dense-block init (the model's default); 1: PyTorch's default",
    )
    ap.add_argument("--min-patch-std", type=float, help="degrade.min_patch_std")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument(
        "--train-dir",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="also train on the images of this folder (e.g. a fetched local: source)",
    )
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(ROOT / "params.yaml")
    dcfg, tcfg = apply_sets(params.degrade, params.train, args.set)
    if args.iterations:
        tcfg = replace(tcfg, iterations=args.iterations, restart_every=args.iterations)
    if args.min_patch_std is not None:
        dcfg = replace(dcfg, min_patch_std=args.min_patch_std)
    tcfg = replace(tcfg, checkpoint_every=tcfg.iterations, log_every=tcfg.iterations)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        holdout = list(params.fetch.holdout)
        for folder, names in (
            ("sample-train", [n for n in SAMPLE_IMAGES if n not in holdout]),
            ("sample-holdout", holdout),
        ):
            (work / folder).mkdir()
            for name in names:
                save_rgb(load_sample(name), work / folder / f"{name}.png")
        (work / "patches").mkdir()
        images = [(img, f"sample-train/{img.name}") for img in sorted((work / "sample-train").glob("*.png"))]
        for folder in args.train_dir:
            images += [(img, f"{folder.name}/{img.name}") for img in sorted(folder.iterdir()) if img.is_file()]
        for img, key in images:
            degrade_to_shard(str(img), key, str(work / "patches"), dcfg)  # as the stage
        patches = load_patch_set(work / "patches")
        for seed in args.seeds:
            trainer = Trainer(replace(tcfg, seed=seed))
            if args.init_scale != 0.1:
                reset_init(trainer.net)
            trainer.prepare()
            t0 = time.perf_counter()
            run(trainer, in_memory_batches(trainer, patches))
            elapsed = time.perf_counter() - t0
            g = gains(trainer.net, work / "sample-holdout")
            results.append({"seed": seed, "seconds": elapsed, "gain": g})
            print(
                f"seed {seed}: {tcfg.iterations} iterations in {elapsed:.0f} s ({elapsed / tcfg.iterations:.3f} s/it); "
                + "  ".join(f"QF{q} {v:+.3f}" for q, v in g.items()),
                flush=True,
            )
    print(
        f"recipe: init scale {args.init_scale:g}, {len(patches)} patch pairs (min_patch_std {dcfg.min_patch_std:g}, "
        f"K {dcfg.qualities_per_image}), {tcfg.iterations} iterations of {tcfg.batch_size} x {tcfg.crop}px, "
        f"lr {tcfg.lr:g}, model {tcfg.model.preset} {tcfg.model.overrides or ''}"
    )
    print(
        "PSNR-Y gain over MATLAB bicubic, held-out chelsea + coffee, mean [min, max] over seeds "
        f"{' '.join(map(str, args.seeds))}:"
    )
    summary = {}
    for q in QUALITIES:
        v = np.array([r["gain"][q] for r in results])
        summary[q] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
        print(f"  QF {q:>2}: {v.mean():+.3f} dB  [{v.min():+.3f}, {v.max():+.3f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
