"""A degradation profile fitted to the JPEGs a platform serves (docs/web-platform-data.md).

From the facts of each file (:mod:`cajnn.degradation.jpeg_facts`): the quality-factor
distribution (`qf_values` + `qf_weights`, the share of files at each QF), the most common chroma
subsampling, a longest-side cap when many files share the largest longest side (the platform
shrank them to it: `max_side` with `cap: after`, the cap on the LR image) and, when most readable
files show a second compression on the same grid, `compressions: 2`. The result is a
:class:`ProfileConfig` mapping (the syntax of `degrade.profiles`) plus the evidence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cajnn.config.base import from_dict, to_dict
from cajnn.config.degrade import PROFILE_SUBSAMPLINGS, ProfileConfig
from cajnn.degradation.jpeg_facts import JpegFacts

CAP_MIN_FILES = 3  # a longest side shared by at least this many files ...
CAP_MIN_SHARE = 0.2  # ... and this share of them is read as the platform's size cap
DOUBLE_MAJORITY = 0.5  # share of readable files with a second compression for `compressions: 2`
NON_IJG_LISTED = 20  # non-IJG files named in the evidence (all are counted)


@dataclass(frozen=True)
class FitResult:
    profile: ProfileConfig
    evidence: dict

    def as_yaml_mapping(self, name: str) -> dict:
        """`{profiles: {name: ...}, fit: evidence}`: drops into params.yaml or a retrain
        source's profiles.yaml."""
        profile = {k: v for k, v in to_dict(self.profile).items() if v is not None}  # every setting, explicit
        return {"profiles": {name: profile}, "fit": self.evidence}


def fit_profile(files: list[tuple[str, JpegFacts]], skipped: list[dict], scale: int = 4) -> FitResult:
    """Fit a profile to (name, facts) pairs; `skipped` (file, reason) rows go into the evidence.
    ValueError when there is nothing to fit."""
    if not files:
        raise ValueError(f"no readable JPEG to fit a profile to ({len(skipped)} files skipped)")
    n = len(files)
    qf = Counter(f.quality.quality for _, f in files)
    values = sorted(qf)
    weights = [round(qf[q] / n, 4) for q in values]
    non_ijg = [(name, f) for name, f in files if not f.quality.ijg]

    sub = Counter(f.subsampling for _, f in files)
    colour = Counter({k: v for k, v in sub.items() if k in PROFILE_SUBSAMPLINGS})
    subsampling = colour.most_common(1)[0][0] if colour else "420"

    longest = Counter(f.longest_side for _, f in files)
    top = max(longest)
    # a cap shrinks images of all shapes to one longest side; files that all share both sides
    # are more likely one camera's full size than a cap
    shorter = {min(f.width, f.height) for _, f in files if f.longest_side == top}
    capped = longest[top] >= CAP_MIN_FILES and longest[top] / n >= CAP_MIN_SHARE and len(shorter) > 1

    verdicts = Counter(f.double.verdict for _, f in files)
    readable = verdicts["single"] + verdicts["double"]
    twice = readable > 0 and verdicts["double"] / readable > DOUBLE_MAJORITY

    profile = from_dict(
        ProfileConfig,
        {
            "scale": scale,
            "qf_values": values,
            "qf_weights": weights,
            "subsampling": subsampling,
            "max_side": top if capped else None,
            "cap": "after" if capped else "before",
            "compressions": 2 if twice else 1,
            "recompress_quality": "draw" if twice else "same",
        },
    )
    evidence = {
        "files": n,
        "skipped": len(skipped),
        "skipped_files": skipped,
        "quality": {
            "histogram": {int(q): qf[q] for q in values},
            "ijg_tables": n - len(non_ijg),
            "non_ijg_tables": len(non_ijg),
            "non_ijg_files": [
                {"file": name, "nearest_ijg_quality": f.quality.quality, "residual": round(f.quality.residual, 4)}
                for name, f in non_ijg[:NON_IJG_LISTED]
            ],
            "how": "IJG scaling of the JPEG standard's tables inverted exactly; other tables: the nearest IJG "
            "quality (mean absolute log ratio of the entries) with the mean relative residual",
        },
        "subsampling": {k: sub[k] for k in sorted(sub)},
        **({} if colour else {"subsampling_note": "no colour file among them: subsampling 420 assumed"}),
        "longest_side": {
            "largest": top,
            "files_at_largest": longest[top],
            "share_at_largest": round(longest[top] / n, 4),
            "most_common": {int(s): c for s, c in longest.most_common(5)},
            "read_as_cap": capped,
            "rule": f"a cap when >= {CAP_MIN_FILES} files and >= {CAP_MIN_SHARE:.0%} of them share the largest "
            "longest side, with more than one shorter side among them",
        },
        "double_compression": {
            **{k: verdicts[k] for k in ("single", "double", "unknown")},
            "read_as_recompressed": twice,
            "how": "peaks in the histograms of low-frequency luma DCT coefficients on the file's own 8x8 grid "
            "(cajnn.degradation.double_jpeg); sees a first compression coarser than the last, not a finer one",
        },
        "not_read": "the resize kernel and the scale cannot be read from served files alone: "
        f"resize {ProfileConfig().resize} and scale {scale} are assumed; pairs (originals + copies) show them",
    }
    return FitResult(profile, evidence)


def read_folder_facts(folder: Path, progress: bool = False) -> tuple[list[tuple[str, JpegFacts]], list[dict]]:
    """Facts of every file under `folder` (recursively; hidden files are skipped too) as
    (relative path, facts), and the files that are not usable JPEGs as {file, reason} rows."""
    from cajnn import console
    from cajnn.degradation.jpeg_facts import NotAJpegError, read_jpeg_facts

    paths = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    files, skipped = [], []
    for path in console.progress(paths, desc="profile fit", unit="file", disable=not progress):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            skipped.append({"file": rel, "reason": "hidden file"})
            continue
        try:
            files.append((rel, read_jpeg_facts(path.read_bytes())))
        except NotAJpegError as exc:
            skipped.append({"file": rel, "reason": str(exc)})
        except OSError as exc:
            skipped.append({"file": rel, "reason": f"cannot read file ({exc.strerror})"})
    return files, skipped
