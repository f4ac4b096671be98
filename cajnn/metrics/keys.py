"""Names of the evaluation's scores, in one place for the code that writes them and the code
that reads them back.

* ``reports/metrics.json`` (and `dvc metrics`): ``SET/qfQ/METHOD/METRIC``, e.g.
  ``holdout/qf10/cajnn/psnr_y``; the downstream stage uses the same shape with a task in place
  of the set (``text/qf10/cajnn/word_acc``).
* MLflow (the evaluate stage's run and the registered model): MLflow metric names may not nest,
  so ``eval/`` + the key with dots: ``eval/holdout.qf10.cajnn.psnr_y``.
* A point of the protocol (one set at one QF), the key of per-point tables such as the
  registry's PSNR comparison and the shipped model's card: ``SET/qfQ``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DOWNSTREAM_PREFIX",
    "FACES",
    "MODEL_PREFIX",
    "QUALITY_METRICS",
    "TEXT",
    "MetricKey",
    "model_metric_name",
    "parse_point",
    "point_key",
]

QUALITY_METRICS = ("psnr_y", "ssim_y")  # what the test protocol (IV-B) scores
MODEL_PREFIX = "eval/"  # MLflow names of the evaluate stage's scores
DOWNSTREAM_PREFIX = "downstream/"  # MLflow names of the downstream stage's scores
TEXT, FACES = "text", "faces"  # the downstream tasks (paper Tables II and III), in the place of a set

_POINT = re.compile(r"(?P<set>[^/]+)/qf(?P<qf>\d+)")
_KEY = re.compile(_POINT.pattern + r"/(?P<method>[^/]+)/(?P<metric>[^/]+)")
# A set name may hold dots (the dots of the MLflow form are then told apart by `qfQ` and the two
# last fields, which never hold one).
_MODEL_KEY = re.compile(
    re.escape(MODEL_PREFIX) + r"(?P<set>[^/]+)\.qf(?P<qf>\d+)\.(?P<method>[^./]+)\.(?P<metric>[^./]+)"
)


def point_key(set_name: str, qf: int) -> str:
    """``SET/qfQ``: one set at one QF."""
    return f"{set_name}/qf{qf}"


def parse_point(key: str) -> tuple[str, int] | None:
    """(set, QF) of a :func:`point_key`, or None for any other string."""
    m = _POINT.fullmatch(key)
    return (m["set"], int(m["qf"])) if m else None


def model_metric_name(key: str, prefix: str = MODEL_PREFIX) -> str:
    """The MLflow metric name of any ``reports/metrics.json`` key (scores and the others, such as
    ``params``): `prefix` + the key with ``/`` turned into ``.``."""
    return prefix + key.replace("/", ".")


@dataclass(frozen=True)
class MetricKey:
    """One score: `metric` of `method` on `set` (or downstream task) at JPEG quality `qf`."""

    set: str
    qf: int
    method: str
    metric: str

    def format(self) -> str:
        """The ``reports/metrics.json`` key, ``SET/qfQ/METHOD/METRIC``."""
        return f"{self.point}/{self.method}/{self.metric}"

    def model_name(self) -> str:
        """The MLflow metric name, ``eval/SET.qfQ.METHOD.METRIC``."""
        return model_metric_name(self.format())

    @property
    def point(self) -> str:
        return point_key(self.set, self.qf)

    @classmethod
    def parse(cls, key: str) -> MetricKey | None:
        """The score a ``reports/metrics.json`` key names, or None for other keys (``params``...)."""
        return cls._from(_KEY.fullmatch(key))

    @classmethod
    def parse_model(cls, name: str) -> MetricKey | None:
        """The score an MLflow metric name (:meth:`model_name`) names, or None."""
        return cls._from(_MODEL_KEY.fullmatch(name))

    @classmethod
    def _from(cls, m: re.Match | None) -> MetricKey | None:
        return cls(m["set"], int(m["qf"]), m["method"], m["metric"]) if m else None
