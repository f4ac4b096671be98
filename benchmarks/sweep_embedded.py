"""What the embedded default's training budget can buy: train one variant of the CPU recipe in a
plain loop on the embedded photos and print its PSNR-Y gain over MATLAB bicubic on the held-out
photos (chelsea + coffee) at QF 10 / 20 / 40 -- the numbers the issue-6 goal (+0.5 dB at QF 10)
is about.

    .venv/bin/python benchmarks/sweep_embedded.py                        # the embedded default
    .venv/bin/python benchmarks/sweep_embedded.py --qualities-per-image 16 --iterations 4200
    .venv/bin/python benchmarks/sweep_embedded.py --qf-range 10 40       # train on low QFs only
    .venv/bin/python benchmarks/sweep_embedded.py --extra-gray           # + 6 grayscale photos
    .venv/bin/python benchmarks/sweep_embedded.py --init esrgan --lr 2e-3 --loss mse --aux 1.0

The loop is the `train` stage's recipe (random crops, dihedral augmentation, Adam, cosine
annealing to 1e-7, `train_step`) without Ray, so variants can be compared quickly; the patch set
is made in-process with the `degrade` stage's function. Each run takes ~3-6 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cajnn.archs import build_model  # noqa: E402
from cajnn.config import DegradeConfig  # noqa: E402
from cajnn.config.degrade import ProfileConfig  # noqa: E402
from cajnn.data.image_io import save_rgb  # noqa: E402
from cajnn.data.sample import load_sample  # noqa: E402
from cajnn.data.shards import degrade_to_shard, load_patch_folder  # noqa: E402
from cajnn.evaluation import bicubic_method, evaluate_sets, model_method  # noqa: E402
from cajnn.training.augment import augment_batch  # noqa: E402
from cajnn.training.losses import build_loss, clean_lr_target  # noqa: E402
from cajnn.training.step import StepGuard, train_step  # noqa: E402

TRAIN = ["astronaut", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "motorcycle_right",
         "retina", "rocket"]
HOLDOUT = ["chelsea", "coffee"]
EXTRA_GRAY = ["camera", "brick", "grass", "gravel", "moon", "coins"]  # skimage's grayscale photos


def write_images(names: list[str], folder: Path, gray: bool = False) -> None:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = np.stack([getattr(data, name)()] * 3, axis=-1) if gray else load_sample(name)
        save_rgb(img.astype(np.uint8), folder / f"{name}.png")


def esrgan_init(net: torch.nn.Module) -> None:
    """ESRGAN-style start: trunk convs kaiming * 0.1, last enhancement conv zero (output = skip)."""
    for m in net.trunk.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, a=0.2)
            m.weight.data.mul_(0.1)
            torch.nn.init.zeros_(m.bias)
    last = [m for m in net.enhance.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)


def gains(net: torch.nn.Module, holdout: Path, qualities: list[int]) -> dict[int, float]:
    net.eval()
    rep = evaluate_sets({"bicubic": bicubic_method(4), "cajnn": model_method(net)}, {"h": holdout}, qualities)
    net.train()
    r = rep.results["h"]
    return {q: r[q]["cajnn"].psnr_y - r[q]["bicubic"].psnr_y for q in qualities}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--overrides", default="{}", help="JSON CAJNN arguments, e.g. '{\"nf\": 48, \"growth\": 24}'")
    ap.add_argument("--iterations", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loss", default="l1")
    ap.add_argument("--aux", type=float, default=0.0, help="aux LR loss weight (adds the LR head)")
    ap.add_argument("--init", choices=["default", "esrgan"], default="default")
    ap.add_argument("--qualities-per-image", type=int, default=4)
    ap.add_argument("--qf-range", type=int, nargs=2, default=[10, 100])
    ap.add_argument("--extra-gray", action="store_true")
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_images(TRAIN, work / "train")
        write_images(HOLDOUT, work / "holdout")
        if args.extra_gray:
            write_images(EXTRA_GRAY, work / "train", gray=True)
        profile = ProfileConfig(qf_min=args.qf_range[0], qf_max=args.qf_range[1])
        dcfg = DegradeConfig(qualities_per_image=args.qualities_per_image, profile="sweep", profiles={"sweep": profile})
        (work / "patches").mkdir()
        for img in sorted((work / "train").glob("*.png")):
            degrade_to_shard(str(img), f"sample-train/{img.name}", str(work / "patches"), dcfg)  # as the stage
        hr_all, lr_all = load_patch_folder(work / "patches")

        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        overrides = json.loads(args.overrides) | ({"aux_lr_head": True} if args.aux else {})
        net = build_model(args.preset, **overrides)
        if args.init == "esrgan":
            esrgan_init(net)
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.iterations, eta_min=1e-7)
        loss_fn, guard = build_loss(args.loss), StepGuard()
        t0 = time.perf_counter()
        for it in range(1, args.iterations + 1):
            idx = rng.integers(0, len(hr_all), args.batch)
            hr, lr = augment_batch(hr_all[idx], lr_all[idx], args.crop, 4, rng)
            clean = clean_lr_target(hr, 4) if args.aux else None
            train_step(net, opt, loss_fn, lr, hr, guard, args.aux, clean)
            sched.step()
            if args.eval_every and it % args.eval_every == 0 and it < args.iterations:
                g = gains(net, work / "holdout", [10, 40])
                print(f"  it {it}: QF10 {g[10]:+.2f}  QF40 {g[40]:+.2f} dB", flush=True)
        elapsed = time.perf_counter() - t0
        g = gains(net, work / "holdout", [10, 20, 40])
    print(f"{vars(args)}")
    print(f"{len(hr_all)} patch pairs, {args.iterations} iterations in {elapsed:.0f} s "
          f"({elapsed / args.iterations:.3f} s/it)")
    print("PSNR-Y gain over MATLAB bicubic (held-out chelsea + coffee): "
          + "  ".join(f"QF{q} {v:+.2f} dB" for q, v in g.items()))


if __name__ == "__main__":
    main()
