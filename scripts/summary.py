"""The end of `make run`: a short table of what the model gained over bicubic (from
reports/metrics.json, written by the evaluate stage) and where the outputs are."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: Path) -> None:
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    rows = sorted(
        {(k.split("/")[0], int(k.split("/")[1][2:])) for k in metrics if k.endswith("/cajnn/psnr_y")},
        key=lambda r: (r[0], r[1]),
    )
    print("PSNR-Y in dB (paper protocol: x4, JPEG 4:2:0, 4-pixel border, Y channel)")
    print(f"  {'set':<12}{'QF':>4}{'bicubic':>9}{'CAJNN':>8}{'gain':>8}{'x8 ens.':>9}{'gain':>8}")
    for name, qf in rows:
        key = f"{name}/qf{qf}"
        bic, net = metrics[f"{key}/bicubic/psnr_y"], metrics[f"{key}/cajnn/psnr_y"]
        ens = metrics.get(f"{key}/cajnn_x8/psnr_y")
        tail = f"{ens:>9.2f}{ens - bic:>+8.2f}" if ens is not None else ""
        print(f"  {name:<12}{qf:>4}{bic:>9.2f}{net:>8.2f}{net - bic:>+8.2f}{tail}")
    registry = root / "reports" / "registry.json"
    reg = json.loads(registry.read_text()) if registry.is_file() else {}
    print()
    print("Outputs")
    print("  table (PSNR/SSIM, runtimes)  reports/table.md       dvc metrics show")
    print("  weights                      models/cajnn.safetensors (+ cajnn.json)")
    print("  training curve               models/train_curve.csv dvc plots show")
    print("  side-by-side crops           reports/samples/")
    print("  before/after page            reports/compare.html   (open it in a browser)")
    down = root / "reports" / "downstream.json"
    if down.is_file():
        d = json.loads(down.read_text())
        qf = min((int(k.split("/")[1][2:]) for k in d if k.startswith("text/qf")), default=None)
        if qf is not None:
            print(
                f"  text / faces (Tables II-III) reports/downstream.md  QF {qf}: words read LR "
                f"{d[f'text/qf{qf}/lr/word_acc']:.1f} % -> CAJNN {d[f'text/qf{qf}/cajnn/word_acc']:.1f} %"
            )
    if reg:
        print(
            f"  model registry               models:/{reg['model_name']}/{reg['version']} "
            f"(champion: version {reg['champion']})"
        )
    print(
        "  MLflow UI                    make ui  ->  http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
