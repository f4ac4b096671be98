"""The paper's ablation grid (Tables IV and V) as DVC experiments, and its report.

`cajnn ablation queue` queues one DVC experiment per setting and seed on the preset in use
(`dvc exp run --queue -n abl-<setting>-s<seed> -S train.model.overrides.<k>=<v> ... evaluate`:
the stages up to `evaluate`, no registration), `--run` starts the queue and waits;
`cajnn ablation report` reads the experiments back (`dvc exp show`) and writes
`reports/ablation.md` in the layout of Tables IV and V, the paper's numbers beside ours, the
seeds used and their mean.

What is compared: the mean PSNR-Y of CAJNN over the QFs of the first evaluation set
(`evaluate.sets`: Set5 for the paper preset, as in the paper's tables; the held-out sample
photos for the embedded default), each setting trained with the preset's own budget.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from cajnn.metrics.keys import MetricKey

EXP_PREFIX = "abl-"


@dataclass(frozen=True)
class Setting:
    """One column of Table IV or V: the network / loss settings and the paper's PSNR (Set5)."""

    table: str  # "IV" | "V"
    key: str  # experiment name part
    label: str
    overrides: dict[str, Any]
    paper_psnr: float


_M = "train.model.overrides."
SETTINGS: tuple[Setting, ...] = (
    # Table IV: context extractor x upsampler; the base also lacks the long-range skip
    Setting(
        "IV",
        "base",
        "Base (no context module, no long-range skip, up-convolution)",
        {_M + "context": "none", _M + "upsampler": "upconv", _M + "global_skip": False},
        27.868,
    ),
    Setting(
        "IV",
        "nonlocal",
        "1: non-local module, up-convolution",
        {_M + "context": "nonlocal", _M + "upsampler": "upconv"},
        28.274,
    ),
    Setting(
        "IV", "aspp-upconv", "2: ASPP, up-convolution", {_M + "context": "aspp", _M + "upsampler": "upconv"}, 28.276
    ),
    Setting(
        "IV",
        "aspp-pixelshuffle",
        "3: ASPP, PixelShuffle (CAJNN)",
        {_M + "context": "aspp", _M + "upsampler": "pixelshuffle"},
        28.292,
    ),
    Setting(
        "IV",
        "seqatrous",
        "4: sequential atrous pooling, PixelShuffle",
        {_M + "context": "sequential_atrous", _M + "upsampler": "pixelshuffle"},
        28.262,
    ),
    # Table V: weight lambda of the artifact-free LR loss (eq. 8); lambda 0 has no LR head
    Setting("V", "lambda16", "a: lambda = 16", {_M + "aux_lr_head": True, "train.aux_lr_weight": 16.0}, 27.507),
    Setting("V", "lambda1", "b: lambda = 1", {_M + "aux_lr_head": True, "train.aux_lr_weight": 1.0}, 27.627),
    Setting("V", "lambda0", "c: lambda = 0 (CAJNN)", {_M + "aux_lr_head": False, "train.aux_lr_weight": 0.0}, 27.672),
)
NAME = re.compile(rf"^{EXP_PREFIX}(?P<key>[a-z0-9-]+)-s(?P<seed>\d+)$")


def _value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def queue_args(setting: Setting, seed: int, extra: list[str] = ()) -> list[str]:
    """The `dvc exp run --queue` arguments of one setting and seed (after `dvc exp run`)."""
    args = ["--queue", "-n", f"{EXP_PREFIX}{setting.key}-s{seed}", "-S", f"train.seed={seed}"]
    for k, v in setting.overrides.items():
        # `++` adds the key, or sets it when the preset already has one (Hydra's syntax)
        args += ["-S", f"{'++' if k.startswith(_M) else ''}{k}={_value(v)}"]
    for o in extra:
        args += ["-S", o]
    return [*args, "evaluate"]


def score(metrics: dict[str, float], set_name: str | None = None) -> tuple[str, float] | None:
    """(set, mean CAJNN PSNR-Y over its QFs) from an experiment's evaluate metrics: the named
    set, else the first one found."""
    found: dict[str, list[float]] = {}
    for k, v in metrics.items():
        if (m := MetricKey.parse(k)) and (m.method, m.metric) == ("cajnn", "psnr_y"):
            found.setdefault(m.set, []).append(float(v))
    if not found:
        return None
    name = set_name if set_name in found else sorted(found)[0]
    return name, statistics.fmean(found[name])


@dataclass
class Row:
    setting: Setting
    seeds: list[int]
    psnr: list[float]
    set_name: str = ""
    iterations: set[int] | None = None  # train.iterations of the experiments (the budget)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.psnr) if self.psnr else None


def collect(experiments: list[dict], set_name: str | None = None) -> list[Row]:
    """One row per setting (all of them, run or not) from `exp_show` rows named abl-<key>-s<seed>."""
    by_key = {s.key: Row(s, [], []) for s in SETTINGS}
    for exp in experiments:
        m = NAME.match(exp.get("name") or "")
        if not m or m["key"] not in by_key:
            continue
        got = score(exp.get("metrics") or {}, set_name)
        if got is None:
            continue  # queued or failed: no evaluation metrics
        row = by_key[m["key"]]
        it = ((exp.get("params") or {}).get("train") or {}).get("iterations")
        if it is not None:
            row.iterations = (row.iterations or set()) | {int(it)}
        row.seeds.append(int(m["seed"]))
        row.psnr.append(got[1])
        row.set_name = got[0]
    for row in by_key.values():
        order = sorted(range(len(row.seeds)), key=row.seeds.__getitem__)
        row.seeds, row.psnr = [row.seeds[i] for i in order], [row.psnr[i] for i in order]
    return list(by_key.values())


def report(rows: list[Row], preset: str) -> str:
    """reports/ablation.md: Tables IV and V, ours (mean of the seeds, each seed, and the change
    against the table's reference column) beside the paper's."""
    lines = [
        f"# Ablation (paper Tables IV and V) on preset `{preset}`",
        "",
        "Ours: mean PSNR-Y of CAJNN over the evaluation QFs of the set named per row, averaged over the seeds "
        "listed; paper: Set5. Delta: against the table's CAJNN column (IV: column 3, V: lambda = 0). "
        "Iterations: as the experiments ran (the preset's own unless overridden at queue time).",
        "",
    ]
    for table, ref_key in (("IV", "aspp-pixelshuffle"), ("V", "lambda0")):
        table_rows = [r for r in rows if r.setting.table == table]
        ref = next(r for r in table_rows if r.setting.key == ref_key)
        paper_ref = ref.setting.paper_psnr
        lines += [
            f"## Table {table}",
            "",
            "| Setting | Ours PSNR-Y (dB) | Ours delta | Paper PSNR (dB) | Paper delta | Seeds | Per seed | Set | "
            "Iterations |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in table_rows:
            mean = f"{r.mean:.3f}" if r.mean is not None else "not run"
            delta = f"{r.mean - ref.mean:+.3f}" if r.mean is not None and ref.mean is not None else "-"
            per = ", ".join(f"{p:.3f}" for p in r.psnr) or "-"
            lines.append(
                f"| {r.setting.label} | {mean} | {delta} | {r.setting.paper_psnr:.3f} | "
                f"{r.setting.paper_psnr - paper_ref:+.3f} | {', '.join(map(str, r.seeds)) or '-'} | {per} | "
                f"{r.set_name or '-'} | {', '.join(map(str, sorted(r.iterations or []))) or '-'} |"
            )
        lines.append("")
    return "\n".join(lines)
