"""Text recognition with Tesseract 5 and the ICDAR word-accuracy convention (paper IV-C)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np


class RecognizerError(RuntimeError):
    """Tesseract is missing or failed."""


def normalize(text: str) -> str:
    """ICDAR word recognition: case-insensitive, alphanumeric characters only."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def word_accuracy(predicted: list[str], truth: list[str]) -> float:
    """Fraction of words read exactly, after :func:`normalize`."""
    return sum(normalize(p) == normalize(t) for p, t in zip(predicted, truth, strict=True)) / len(truth)


def char_error_rate(predicted: list[str], truth: list[str]) -> float:
    """Edit distance over the truth's length, summed over all words (normalized text)."""
    pairs = [(normalize(p), normalize(t)) for p, t in zip(predicted, truth, strict=True)]
    return sum(edit_distance(p, t) for p, t in pairs) / max(1, sum(len(t) for _, t in pairs))


class Tesseract:
    """Tesseract 5 (Debian's `tesseract-ocr`, LSTM engine, English) reading one word per image.

    All images of a call go to one tesseract process through a list file (one page each), so
    the start-up cost (~0.2 s: loading the language model) is paid once, not per word."""

    name = "tesseract"

    def __init__(self, binary: str = "tesseract", lang: str = "eng", psm: int = 7):
        path = shutil.which(binary)
        if path is None:
            raise RecognizerError(
                f"{binary} not found (Debian: apt-get install tesseract-ocr tesseract-ocr-eng; make setup installs it)"
            )
        self.binary, self.lang, self.psm = path, lang, psm  # psm 7: the image is one line of text
        self.version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.split("\n")[0]

    def read(self, images: list[np.ndarray], processes: int | None = None) -> list[str]:
        """The text read in each image ("" when nothing was read). The images are split over
        `processes` tesseract processes (default: the CPUs this process may use, at most 4)."""
        if not images:
            return []
        n = max(1, min(processes or min(4, len(os.sched_getaffinity(0))), len(images)))
        chunks = [images[i * len(images) // n : (i + 1) * len(images) // n] for i in range(n)]
        with tempfile.TemporaryDirectory(prefix="cajnn-ocr-") as tmp:
            procs = [self._start(chunk, Path(tmp) / f"part{k}") for k, chunk in enumerate(chunks)]
            return [text for proc, chunk in zip(procs, chunks) for text in self._collect(proc, len(chunk))]

    def _start(self, images: list[np.ndarray], folder: Path) -> subprocess.Popen:
        from PIL import Image

        folder.mkdir()
        paths = []
        for i, img in enumerate(images):
            p = folder / f"{i:06d}.png"
            Image.fromarray(img).save(p, compress_level=1)
            paths.append(str(p))
        listing = folder / "pages.txt"
        listing.write_text("\n".join(paths) + "\n")
        # One thread per process: tesseract's OpenMP threads only wait on small word images.
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        return subprocess.Popen(
            [self.binary, str(listing), "stdout", "--psm", str(self.psm), "-l", self.lang, "tsv"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    @staticmethod
    def _collect(proc: subprocess.Popen, n: int) -> list[str]:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RecognizerError(f"tesseract failed ({proc.returncode}): {stderr.strip()[-500:]}")
        # TSV rows carry their page number: level-1 rows count the pages (an empty reading has
        # one too), level-5 rows are the words read on that page.
        words: dict[int, list[str]] = {}
        for line in stdout.splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) < 12:
                continue
            page = int(cols[1])
            words.setdefault(page, [])
            if cols[0] == "5" and cols[11].strip():
                words[page].append(cols[11].strip())
        if sorted(words) != list(range(1, n + 1)):
            raise RecognizerError(f"tesseract returned {len(words)} pages for {n} images")
        return [" ".join(words[i]) for i in range(1, n + 1)]
