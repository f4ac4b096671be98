"""The `register` section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegisterConfig:
    """`register` section: MLflow model registry name and the promotion policy."""

    model_name: str = "cajnn"
    # A challenger becomes champion only if its mean PSNR-Y is higher by more than `min_gain`
    # and no single set/QF is worse by more than `tolerance` dB (ties keep the champion).
    min_gain: float = 0.0
    tolerance: float = 0.1
    out: str = "reports/registry.json"
