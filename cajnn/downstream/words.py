"""Word images with known ground truth for the text-recognition check (paper IV-C, Table II).

The paper reads ICDAR2013's cropped words; no package ships them, so the words are drawn here:
a word from a word list (Debian's wamerican), a system font, a size, a colour that contrasts
with its background by a drawn amount, on a crop of one of the sample photos. Everything comes
from one seeded generator, so the same config gives the same images (and the same text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cajnn.config.downstream import DownstreamConfig


class DownstreamDataError(RuntimeError):
    """A word list or font the builder needs is missing (make setup installs them)."""


@dataclass(frozen=True)
class WordImage:
    text: str
    font: str  # file name
    font_px: int  # HR font size
    hr: np.ndarray  # (H, W, 3) uint8


def load_words(path: str | Path, n: int, rng: np.random.Generator) -> list[str]:
    """`n` distinct words of 4-10 ASCII letters from a one-word-per-line list, drawn by `rng`."""
    path = Path(path)
    if not path.is_file():
        raise DownstreamDataError(f"word list {path} not found (Debian: apt-get install wamerican; make setup does)")
    seen, words = set(), []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        w = line.strip()
        if 4 <= len(w) <= 10 and w.isascii() and w.isalpha() and w.lower() not in seen:
            seen.add(w.lower())
            words.append(w)
    if len(words) < n:
        raise DownstreamDataError(f"word list {path}: {len(words)} usable words, {n} wanted")
    return [words[i] for i in sorted(rng.choice(len(words), size=n, replace=False))]


def check_fonts(paths: list[str]) -> list[str]:
    """`paths`, or an error naming the Debian packages when any font file is missing."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DownstreamDataError(
            f"fonts not found: {', '.join(missing)} (Debian: fonts-dejavu-core "
            "fonts-liberation; make setup installs them)"
        )
    return paths


def background_source():
    """A function (rng, h, w) -> a (h, w, 3) crop of a sample photo (resized up when smaller)."""
    from PIL import Image

    from cajnn.data.sample import SAMPLE_IMAGES, load_sample

    photos = [load_sample(name) for name in SAMPLE_IMAGES]

    def crop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        img = photos[int(rng.integers(len(photos)))]
        if img.shape[0] < h or img.shape[1] < w:
            f = max(h / img.shape[0], w / img.shape[1])
            img = np.asarray(
                Image.fromarray(img).resize(
                    (int(np.ceil(img.shape[1] * f)), int(np.ceil(img.shape[0] * f))), Image.Resampling.BICUBIC
                )
            )
        y = int(rng.integers(img.shape[0] - h + 1))
        x = int(rng.integers(img.shape[1] - w + 1))
        return np.ascontiguousarray(img[y : y + h, x : x + w, :3])

    return crop


def x_height(font_path: str, font_px: int) -> int:
    """Pixel height of a lower-case x at this size (the size that decides legibility)."""
    from PIL import ImageFont

    box = ImageFont.truetype(font_path, font_px).getbbox("x")
    return box[3] - box[1]


def render_word(
    text: str, font_path: str, font_px: int, background: np.ndarray, contrast: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw `text` centred on `background`; its luminance differs from the background's mean by
    `contrast` (0..255), darker or lighter whichever fits. The photo is blurred and its contrast
    halved first, as a caption's banner on a web image is: the check is about the glyphs, and
    Tesseract (made for documents) reads photo texture as letters."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(font_path, font_px)
    h, w = background.shape[:2]
    soft = np.asarray(Image.fromarray(background).filter(ImageFilter.GaussianBlur(4)), dtype=np.float32)
    soft = soft.mean(axis=(0, 1)) + 0.5 * (soft - soft.mean(axis=(0, 1)))
    bg = Image.fromarray(np.clip(soft + 0.5, 0, 255).astype(np.uint8))
    luma = float(np.asarray(bg.convert("L"), dtype=np.float32).mean())
    options = [v for v in (luma - contrast, luma + contrast) if 0 <= v <= 255]
    if options:
        target = options[int(rng.integers(len(options)))]
    else:  # the contrast does not fit either way: as far from the background as it goes
        target = 0.0 if luma > 127.5 else 255.0
    tint = rng.uniform(-40, 40, size=3)  # a colour, not only grey, of about the target luminance
    colour = tuple(int(v) for v in np.clip(target + tint - (tint @ [0.299, 0.587, 0.114]), 0, 255))
    draw = ImageDraw.Draw(bg)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((w - (right - left)) / 2 - left, (h - (bottom - top)) / 2 - top), text, font=font, fill=colour)
    return np.asarray(bg)


def build_word_images(cfg: DownstreamConfig) -> list[WordImage]:
    """`cfg.words` word images, each a tight crop (the word's box + `cfg.word_margin` font sizes,
    rounded up to a multiple of the scale), deterministic for `cfg.seed`."""
    from PIL import ImageFont

    rng = np.random.default_rng([cfg.seed, 1])
    fonts = check_fonts(cfg.fonts)
    words = load_words(cfg.word_list, cfg.words, rng)
    photos = background_source()
    out = []
    for text in words:
        font = fonts[int(rng.integers(len(fonts)))]
        px = int(rng.integers(cfg.font_px[0], cfg.font_px[1] + 1))
        left, top, right, bottom = ImageFont.truetype(font, px).getbbox(text)
        margin = max(4, round(cfg.word_margin * px))
        h = -(-(bottom - top + 2 * margin) // cfg.scale) * cfg.scale
        w = -(-(right - left + 2 * margin) // cfg.scale) * cfg.scale
        contrast = float(rng.uniform(90, 200))
        out.append(WordImage(text, Path(font).name, px, render_word(text, font, px, photos(rng, h, w), contrast, rng)))
    return out
