"""Open-set thresholds: how close a face must be to an enrolled person to be named, by gallery size.

A model's 1:1 threshold is set for one photo against one photo. Against a gallery of N
people a stranger has N chances to fall within it, so a gallery names strangers far more
often than a pair is wrongly called the same. The model's `open_set` table holds, for held-out
people, the cosine distance below which a given fraction of different-person comparisons
fall (the false match rate, FMR). A gallery of N people that should name at most a fraction
`far` of strangers uses the distance at FMR = far / N (a union bound over its people), never
above the 1:1 threshold. Measured against LFW strangers in docs/gallery.md.
"""

from __future__ import annotations

import math

import numpy as np

from facecmp.errors import FacecmpError, ModelError
from facecmp.meta import ModelMeta

FMR_LEVELS = (0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
DEFAULT_FAR = 0.01  # the share of strangers a gallery may name, unless told otherwise


def impostor_table(probes: np.ndarray, probe_labels: np.ndarray, enrolled: np.ndarray,
                   enrolled_labels: np.ndarray) -> list[list[float]]:
    """[[fmr, cosine distance], ...]: the distance below which `fmr` of the comparisons of a
    probe with an enrolled vector of another person fall, at each of FMR_LEVELS that the
    number of such comparisons supports (at least 10 below the level)."""
    a = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    b = enrolled / np.linalg.norm(enrolled, axis=1, keepdims=True)
    dist = 1.0 - a @ b.T
    other = np.asarray(probe_labels)[:, None] != np.asarray(enrolled_labels)[None, :]
    impostors = np.sort(dist[other])
    if not len(impostors):
        raise FacecmpError("no comparisons of different people to calibrate on")
    return [[fmr, round(float(np.quantile(impostors, fmr)), 6)]
            for fmr in FMR_LEVELS if fmr * len(impostors) >= 10]


def check_far(far: float) -> float:
    """far as a float in (0, 1), else a one-line error."""
    try:
        far = float(far)
    except (TypeError, ValueError):
        raise FacecmpError(f"--far must be a number, got {far!r}") from None
    if not 0 < far < 1:
        raise FacecmpError(f"--far must be between 0 and 1 (a share of strangers), got {far}")
    return far


def gallery_threshold(meta: ModelMeta, people: int, far: float = DEFAULT_FAR) -> float:
    """The cosine distance within which a face is named in a gallery of `people` people, so
    that about `far` of strangers are named: the open-set table at FMR far / people
    (interpolated in log FMR; the table's smallest FMR where the gallery needs less), never
    above the model's 1:1 threshold."""
    far = check_far(far)
    _, one_to_one = meta.threshold_for("cosine")
    table = meta.open_set.get("cosine")
    if not table:
        raise ModelError("the model has no open-set table; run tools/calibrate_open_set.py "
                         "or pass --threshold")
    fmr = far / max(1, people)
    levels = np.log([row[0] for row in table])[::-1]  # ascending
    dists = np.asarray([row[1] for row in table])[::-1]
    value = float(np.interp(math.log(fmr), levels, dists))  # clamped at both ends
    return min(value, one_to_one)


def naming_threshold(meta: ModelMeta, people: int, threshold: float | None = None,
                     far: float = DEFAULT_FAR) -> float:
    """The cosine distance within which a face is named among `people` people: threshold if
    given, else the model's open-set threshold for that gallery size, else its 1:1 one."""
    if threshold is not None or not meta.open_set.get("cosine"):
        return meta.threshold_for("cosine", threshold)[1]
    return gallery_threshold(meta, people, far)
