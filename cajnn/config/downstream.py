"""The `downstream` section: does restoration help programs read text and find faces?"""

from __future__ import annotations

from dataclasses import dataclass, field

from cajnn.config.base import ConfigError


@dataclass(frozen=True)
class DownstreamConfig:
    """`downstream` section: the paper's high-level vision checks (IV-C text, Table II; IV-D tiny
    faces, Table III) on word images and face scenes built offline from packaged data."""

    weights: str = "models/cajnn.safetensors"
    qualities: list[int] = field(default_factory=lambda: [10, 20, 40])  # the test protocol's QFs
    scale: int = 4
    subsampling: str = "420"
    # text: words from a word list, drawn with system fonts on crops of the sample photos
    words: int = 500
    word_list: str = "/usr/share/dict/american-english"  # Debian's wamerican
    fonts: list[str] = field(
        default_factory=lambda: [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
            "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
        ]
    )
    font_px: list[int] = field(default_factory=lambda: [28, 40])  # HR font size range (LR = / scale)
    word_margin: float = 0.3  # background around the word's box, in font sizes (ICDAR crops are tight)
    # faces: lfw face crops placed on crops of the sample photos at known boxes
    scenes: int = 24
    faces_per_scene: int = 6
    scene_hr: int = 384  # HR scene side
    face_px: list[int] = field(default_factory=lambda: [32, 128])  # HR face side range
    # face size bins by HR side (WIDER FACE's easy/medium/hard by difficulty; here by size)
    face_bins: dict[str, list[int]] = field(
        default_factory=lambda: {"easy": [88, 129], "medium": [56, 88], "hard": [32, 56]}
    )
    seed: int = 0
    out: str = "reports"

    def __post_init__(self) -> None:
        bad = [q for q in self.qualities if not 1 <= q <= 100]
        if bad:
            raise ConfigError(f"downstream: quality factors {bad} are outside 1..100")
        if self.words < 1 or self.scenes < 0 or self.faces_per_scene < 1:
            raise ConfigError("downstream: words must be >= 1, scenes >= 0, faces_per_scene >= 1")
        for name, pair in (("font_px", self.font_px), ("face_px", self.face_px)):
            if len(pair) != 2 or pair[0] > pair[1] or pair[0] < 1:
                raise ConfigError(f"downstream.{name}: expected [low, high] with 1 <= low <= high, got {pair}")
        if self.scene_hr % self.scale:
            raise ConfigError(f"downstream: scene_hr must be a multiple of scale ({self.scale})")
        if self.face_px[1] * 2 > self.scene_hr:
            raise ConfigError("downstream: face_px's largest face must fit twice into scene_hr")
