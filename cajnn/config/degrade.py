"""The `degrade` section and degradation profiles (docs/design.md "Data and degradation", paper IV-A).

A profile describes how images reach a viewer through some platform: how they are shrunk,
capped in size, JPEG-compressed (quality factor distribution, chroma subsampling), possibly
compressed again, and cropped so that the 8x8 block grid moves. Profiles live in `params.yaml`
(`degrade.profiles`), so new web-platform degradation data is a new entry there, not new code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cajnn.config.base import ConfigError

# Resize kernels a profile may name. `matlab_bicubic` is MATLAB's imresize (paper IV-A); the
# `pillow_*` ones are Pillow's Image.resize filters (antialiased, with Pillow's own border
# handling and 8-bit fixed-point arithmetic), as used by many Python web back-ends.
RESIZE_KERNELS = ("matlab_bicubic", "pillow_bicubic", "pillow_lanczos", "pillow_bilinear")
PROFILE_SUBSAMPLINGS = ("420", "422", "444")
CAP_STAGES = ("before", "after")
RECOMPRESS_QUALITY = ("same", "draw")
MAX_COMPRESSIONS = 8
MAX_GRID_OFFSET = 15  # one 4:2:0 MCU (16 px) minus one: every block-grid phase is reachable


@dataclass(frozen=True)
class ProfileConfig:
    """A degradation profile. The defaults are the paper's training degradation (`paper`):
    MATLAB bicubic x1/4, QF uniform in 10..100, 4:2:0, one compression, no grid offset.

    Quality factors come either from the inclusive range ``qf_min..qf_max`` (uniform) or from
    the list ``qf_values`` with optional ``qf_weights``; give one form, not both. Each of the
    ``compressions`` passes JPEG-encodes and decodes the whole LR image; pass 2 and later reuse
    the first QF (``recompress_quality: same``) or draw a fresh one (``draw``). Before every
    pass the image loses ``dy, dx`` pixels (each drawn in ``0..grid_offset``) at the top and
    left, so that pass's 8x8 grid sits at a new phase relative to the image content and to the
    previous pass (the HR target is cropped by ``scale * dy``, ``scale * dx`` to stay aligned).
    ``max_side`` caps the longest side: with ``cap: before`` the HR image is first shrunk
    (MATLAB bicubic, a clean resize of the ground truth) so its longest side is at most
    ``max_side``; with ``cap: after`` the LR image, once shrunk by ``scale``, is shrunk again
    with the profile's kernel until its longest side is at most ``max_side`` (a platform's own
    size limit), and the HR target is resized (MATLAB bicubic) to exactly ``scale`` x that size.
    """

    resize: str = "matlab_bicubic"
    scale: int = 4
    qf_min: int | None = None  # None: 10 (and 100 for qf_max) unless qf_values is given
    qf_max: int | None = None
    qf_values: list[int] | None = None
    qf_weights: list[float] | None = None
    subsampling: str = "420"
    max_side: int | None = None
    cap: str = "before"
    compressions: int = 1
    recompress_quality: str = "same"
    grid_offset: int = 0

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_KERNELS:
            raise ConfigError(f"profile resize {self.resize!r}: known kernels are {', '.join(RESIZE_KERNELS)}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or not 1 <= self.scale <= 8:
            raise ConfigError(f"profile scale {self.scale!r}: must be an integer in 1..8 (the SR factor)")
        self._check_qualities()
        if self.subsampling not in PROFILE_SUBSAMPLINGS:
            raise ConfigError(f"profile subsampling {self.subsampling!r}: use 420, 422 or 444")
        if self.max_side is not None and (isinstance(self.max_side, bool) or self.max_side < 8):
            raise ConfigError(f"profile max_side {self.max_side!r}: must be null or an integer >= 8")
        if self.cap not in CAP_STAGES:
            raise ConfigError(f"profile cap {self.cap!r}: use 'before' (HR is capped) or 'after' (LR is capped)")
        if not 1 <= self.compressions <= MAX_COMPRESSIONS:
            raise ConfigError(f"profile compressions {self.compressions}: must be in 1..{MAX_COMPRESSIONS}")
        if self.recompress_quality not in RECOMPRESS_QUALITY:
            raise ConfigError(
                f"profile recompress_quality {self.recompress_quality!r}: use 'same' (every pass at the "
                "first QF) or 'draw' (each pass draws its own QF)"
            )
        if not 0 <= self.grid_offset <= MAX_GRID_OFFSET:
            raise ConfigError(f"profile grid_offset {self.grid_offset}: must be in 0..{MAX_GRID_OFFSET} (LR pixels)")

    def _check_qualities(self) -> None:
        if self.qf_values is None:
            if self.qf_weights is not None:
                raise ConfigError("profile qf_weights needs qf_values (one weight per listed QF)")
            # frozen dataclass: fill the paper's range in place of "not given"
            if self.qf_min is None:
                object.__setattr__(self, "qf_min", 10)
            if self.qf_max is None:
                object.__setattr__(self, "qf_max", 100)
            for name in ("qf_min", "qf_max"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"profile {name} {value!r}: must be an integer")
            if not 1 <= self.qf_min <= self.qf_max <= 100:
                raise ConfigError(
                    f"profile QF range [{self.qf_min}, {self.qf_max}] must lie in 1..100 (qf_min <= qf_max)"
                )
            return
        if self.qf_min is not None or self.qf_max is not None:
            raise ConfigError("profile gives both qf_values and qf_min/qf_max: use one form of QF distribution")
        if not self.qf_values:
            raise ConfigError("profile qf_values is empty: list at least one quality factor")
        bad = [q for q in self.qf_values if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100]
        if bad:
            raise ConfigError(f"profile qf_values {bad}: every QF must be an integer in 1..100")
        if self.qf_weights is not None:
            if len(self.qf_weights) != len(self.qf_values):
                raise ConfigError(
                    f"profile qf_weights has {len(self.qf_weights)} entries for {len(self.qf_values)} qf_values"
                )
            if any(not math.isfinite(w) or w < 0 for w in self.qf_weights) or sum(self.qf_weights) <= 0:
                raise ConfigError(f"profile qf_weights {self.qf_weights}: must be >= 0 with a positive sum")

    @property
    def qf_range(self) -> tuple[int, int]:
        """Smallest and largest QF the profile can draw."""
        if self.qf_values is not None:
            live = [q for q, w in zip(self.qf_values, self.qf_weights or [1.0] * len(self.qf_values)) if w > 0]
            return min(live), max(live)
        return int(self.qf_min), int(self.qf_max)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DegradeConfig:
    """`degrade` section: HR folders -> aligned HR/LR patch shards (Parquet) + manifest."""

    inputs: list[str] = field(default_factory=lambda: ["data/raw/sample-train"])
    # Folders of real pairs (originals/ + copies/, matched by file stem: cajnn.data.pairs): the
    # platform's own JPEGs as LR, the originals as HR targets; their patches join the same shards.
    pairs: list[str] = field(default_factory=list)
    out: str = "data/patches"
    profile: str = "paper"
    profiles: dict[str, ProfileConfig] = field(default_factory=lambda: {"paper": ProfileConfig()})
    # K quality factors (K degradations) drawn per image; the whole LR image is compressed once
    # per draw (or `compressions` times, for profiles that re-compress).
    qualities_per_image: int = 4
    # Stored LR patch side (HR = scale x this); larger than the training crop so that random
    # crops still see every 8x8 JPEG block-grid phase.
    patch_size: int = 48
    stride: int = 40
    # Patch positions whose HR luma standard deviation (0..255) is below this are left out:
    # flat sky or black background teaches a restoration net little (the retina photo is
    # mostly black). 0 keeps every patch (the paper's setting). Dropped positions are counted
    # in the manifest.
    min_patch_std: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_patch_std < 0:
            raise ConfigError(f"degrade.min_patch_std {self.min_patch_std}: must be >= 0")
        if self.qualities_per_image < 1:
            raise ConfigError(f"degrade.qualities_per_image {self.qualities_per_image}: must be >= 1")
        if self.patch_size < 1:
            raise ConfigError(f"degrade.patch_size {self.patch_size}: must be >= 1 (LR pixels)")
        if self.stride < 1:
            raise ConfigError(f"degrade.stride {self.stride}: must be >= 1 (LR pixels)")

    def selected_profile(self) -> ProfileConfig:
        try:
            return self.profiles[self.profile]
        except KeyError:
            raise ConfigError(
                f"degrade.profile {self.profile!r} is not in degrade.profiles ({', '.join(sorted(self.profiles))})"
            ) from None
