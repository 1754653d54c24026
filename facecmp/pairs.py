"""Verification pair lists: LFW-format and CSV pair files, fold selection, and
balanced pair generation from an identity-per-folder image tree."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from facecmp.errors import FacecmpError
from facecmp.images import is_image_name

__all__ = ["Pair", "make_balanced_pairs", "missing_images", "read_pairs", "select_folds",
           "write_pairs_csv"]

_TRUE = {"1", "true", "same", "yes", "y", "t"}
_FALSE = {"0", "false", "different", "diff", "no", "n", "f"}


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person.

    ``fold`` is 1-based (1 for files without folds); ``line`` is the 1-based line
    of the pair in its source file.
    """

    path_a: Path
    path_b: Path
    same: bool
    fold: int
    line: int


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise FacecmpError(f"{path}: pairs file not found") from None
    except IsADirectoryError:
        raise FacecmpError(f"{path}: is a directory, not a pairs file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FacecmpError(f"{path}: cannot read pairs file ({exc})") from None


def _lfw_header(line: str) -> tuple[int, int] | None:
    """(folds, pairs per half-fold) if the line is an LFW header, else None."""
    fields = line.split()
    if not 1 <= len(fields) <= 2 or not all(f.isdigit() for f in fields):
        return None
    nums = [int(f) for f in fields]
    return (nums[0], nums[1]) if len(nums) == 2 else (1, nums[0])


def read_pairs(path: str | Path, images_root: Path | None = None) -> list[Pair]:
    """Read an LFW pairs file or a `path_a,path_b,same[,fold]` CSV, detecting which it is."""
    path = Path(path)
    lines = _read_lines(path)
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise FacecmpError(f"{path}: pairs file is empty")
    header = _lfw_header(lines[first])
    if header is not None:
        if images_root is None:
            images_root = path.parent / "lfw" if (path.parent / "lfw").is_dir() else path.parent
        return _parse_lfw(path, lines, first, header, Path(images_root))
    root = Path(images_root) if images_root is not None else path.parent
    return _parse_csv(path, lines, root)


def _lfw_image(root: Path, name: str, number: str, where: str) -> Path:
    if not number.isdigit() or int(number) < 1:
        raise FacecmpError(f"{where}: image number {number!r} is not a positive integer")
    return root / name / f"{name}_{int(number):04d}.jpg"


def _parse_lfw(path: Path, lines: list[str], first: int, header: tuple[int, int],
               root: Path) -> list[Pair]:
    folds, n = header
    if folds < 1 or n < 1:
        raise FacecmpError(f"{path}:{first + 1}: header needs positive fold and pair "
                           f"counts, got {lines[first].strip()!r}")
    # The k-th pair line (0-based) belongs to fold k // 2n; its first n are matched.
    expected_total = folds * 2 * n
    pairs: list[Pair] = []
    last = first + 1
    for idx in range(first + 1, len(lines)):
        fields = lines[idx].split()
        if not fields:
            continue
        lineno, last = idx + 1, idx + 1
        where = f"{path}:{lineno}"
        k = len(pairs)
        if k >= expected_total:
            raise FacecmpError(f"{where}: extra line; the header promises {folds} fold(s) "
                               f"of {n} matched + {n} mismatched pairs ({expected_total} lines)")
        fold, pos = k // (2 * n) + 1, k % (2 * n)
        same = pos < n
        kind, count = ("matched", pos + 1) if same else ("mismatched", pos - n + 1)
        want = 3 if same else 4
        if len(fields) != want:
            form = "'name n1 n2'" if same else "'name1 n1 name2 n2'"
            raise FacecmpError(f"{where}: expected {kind} pair {count} of {n} in fold {fold} "
                               f"({want} fields {form}), got {len(fields)} fields")
        if same:
            a = _lfw_image(root, fields[0], fields[1], where)
            b = _lfw_image(root, fields[0], fields[2], where)
        else:
            a = _lfw_image(root, fields[0], fields[1], where)
            b = _lfw_image(root, fields[2], fields[3], where)
        pairs.append(Pair(a, b, same, fold, lineno))
    if len(pairs) < expected_total:
        k = len(pairs)
        fold, pos = k // (2 * n) + 1, k % (2 * n)
        kind, have = ("matched", pos) if pos < n else ("mismatched", pos - n)
        raise FacecmpError(f"{path}:{last}: file ends in fold {fold} after {have} of {n} "
                           f"{kind} pairs; the header promises {folds} fold(s) "
                           f"({expected_total} pair lines), found {k}")
    return pairs


def _parse_same(value: str) -> bool | None:
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def _parse_fold(value: str, where: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise FacecmpError(f"{where}: 'fold' must be a positive integer, got {value!r}")
    return int(value)


def _parse_csv(path: Path, lines: list[str], root: Path) -> list[Pair]:
    """Rows `path_a,path_b,same` or `path_a,path_b,same,fold`; every row has the same width."""
    pairs: list[Pair] = []
    width = None  # 3 or 4, set by the first row (header or data)
    for idx, raw in enumerate(lines):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        lineno = idx + 1
        where = f"{path}:{lineno}"
        fields = [f.strip() for f in next(csv.reader([text]))]
        is_first = width is None
        if is_first and len(fields) not in (3, 4):
            raise FacecmpError(f"{where}: expected 3 comma-separated fields "
                               f"'path_a,path_b,same' (or 4 with ',fold'), got {len(fields)}")
        if not is_first and len(fields) != width:
            raise FacecmpError(f"{where}: {len(fields)} comma-separated fields where the rows "
                               f"above have {width}; either every row has a fold or none does")
        width = len(fields)
        # "same" is both a column name and a valid label, so a header is recognised
        # by its first two fields not being image file names.
        if (is_first and re.fullmatch(r"[A-Za-z_ ]+", fields[2])
                and not is_image_name(fields[0]) and not is_image_name(fields[1])
                and (width == 3 or not fields[3].isdigit())):
            continue
        same = _parse_same(fields[2])
        if same is None:
            raise FacecmpError(f"{where}: 'same' must be 1/0, true/false, same/different "
                               f"or yes/no, got {fields[2]!r}")
        if not fields[0] or not fields[1]:
            raise FacecmpError(f"{where}: empty image path")
        fold = _parse_fold(fields[3], where) if width == 4 else 1
        a, b = (p if p.is_absolute() else root / p for p in map(Path, fields[:2]))
        pairs.append(Pair(a, b, same, fold, lineno))
    if not pairs:
        raise FacecmpError(f"{path}: no pairs in file")
    return pairs


def _parse_fold_spec(spec: str) -> set[int]:
    wanted: set[int] = set()
    bad = FacecmpError(f"bad fold selection {spec!r}: expected e.g. 3, 1-5 or 1,3,7-8")
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise bad
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if lo < 1 or hi < lo:
            raise bad
        wanted.update(range(lo, hi + 1))
    return wanted


def select_folds(pairs: list[Pair], spec: str) -> list[Pair]:
    """Keep the pairs in the folds named by spec ("3", "1-5", "1,3,7-8"), in order."""
    wanted = _parse_fold_spec(spec)
    present = sorted({p.fold for p in pairs})
    absent = sorted(wanted.difference(present))
    if absent:
        have = f"{present[0]}-{present[-1]}" if present else "none"
        raise FacecmpError(f"fold(s) {','.join(map(str, absent))} not in the pairs "
                           f"(available folds: {have})")
    return [p for p in pairs if p.fold in wanted]


def missing_images(pairs: Iterable[Pair]) -> list[tuple[Pair, Path]]:
    """Every (pair, path) where the pair names an image file that does not exist."""
    exists: dict[Path, bool] = {}  # LFW reuses images across pairs; stat each once
    out: list[tuple[Pair, Path]] = []
    for pair in pairs:
        for p in (pair.path_a, pair.path_b):
            if p not in exists:
                exists[p] = p.is_file()
            if not exists[p]:
                out.append((pair, p))
    return out


def _identities(root: Path) -> list[list[Path]]:
    """Image lists (sorted) of each identity folder under root that holds images."""
    if not root.is_dir():
        raise FacecmpError(f"{root}: not a folder of identity folders")
    groups = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(f for f in sub.iterdir() if f.is_file() and is_image_name(f))
        if images:
            groups.append(images)
    if not groups:
        raise FacecmpError(f"{root}: no identity folders with images "
                           "(expected ROOT/<identity>/<image>)")
    return groups


def _sample_unique(n: int, draw: Callable[[], tuple[Path, Path]],
                   enumerate_all: Callable[[], list[tuple[Path, Path]]],
                   rng: np.random.Generator) -> list[tuple[Path, Path]]:
    """n distinct keys from draw(); enumerate the rest if drawing stops paying off."""
    chosen: list[tuple[Path, Path]] = []
    seen: set[tuple[Path, Path]] = set()
    budget = 20 * n + 1000  # generous; only near-exhaustive requests run out
    while len(chosen) < n and budget > 0:
        budget -= 1
        key = draw()
        if key not in seen:
            seen.add(key)
            chosen.append(key)
    if len(chosen) < n:
        rest = [k for k in enumerate_all() if k not in seen]
        picks = rng.choice(len(rest), size=n - len(chosen), replace=False)
        chosen.extend(rest[i] for i in sorted(picks))
    return chosen


def make_balanced_pairs(root: Path, n_same: int, n_different: int,
                        seed: int = 0) -> list[Pair]:
    """n_same same-identity then n_different different-identity pairs, seeded, unique."""
    root = Path(root)
    if n_same < 0 or n_different < 0:
        raise FacecmpError("pair counts must not be negative")
    groups = _identities(root)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    multi = [g for g in groups if len(g) >= 2]
    same_cap = int(sum(len(g) * (len(g) - 1) // 2 for g in multi))
    diff_cap = int((sizes.sum() ** 2 - (sizes ** 2).sum()) // 2)
    if n_same > same_cap:
        raise FacecmpError(f"{root}: only {same_cap} same-identity pairs possible "
                           f"({len(multi)} identities with 2+ images), asked for {n_same}")
    if n_different > 0 and len(groups) < 2:
        raise FacecmpError(f"{root}: different-identity pairs need at least 2 identity "
                           f"folders with images, found {len(groups)}")
    if n_different > diff_cap:
        raise FacecmpError(f"{root}: only {diff_cap} different-identity pairs possible, "
                           f"asked for {n_different}")
    rng = np.random.default_rng(seed)

    # Identities are drawn uniformly (not per image), so one prolific person
    # cannot dominate the pair list.
    def draw_same() -> tuple[Path, Path]:
        g = multi[rng.integers(len(multi))]
        i, j = rng.choice(len(g), size=2, replace=False)
        return (g[i], g[j]) if i < j else (g[j], g[i])

    def draw_diff() -> tuple[Path, Path]:
        gi, gj = rng.choice(len(groups), size=2, replace=False)
        a, b = groups[gi][rng.integers(len(groups[gi]))], groups[gj][rng.integers(len(groups[gj]))]
        return (a, b) if a < b else (b, a)

    def all_same() -> list[tuple[Path, Path]]:
        return [(g[i], g[j]) for g in multi for i in range(len(g)) for j in range(i + 1, len(g))]

    def all_diff() -> list[tuple[Path, Path]]:
        out = []
        for gi in range(len(groups)):
            for gj in range(gi + 1, len(groups)):
                out.extend((min(a, b), max(a, b)) for a in groups[gi] for b in groups[gj])
        return out

    same = _sample_unique(n_same, draw_same, all_same, rng) if n_same else []
    diff = _sample_unique(n_different, draw_diff, all_diff, rng) if n_different else []
    labelled = [(k, True) for k in same] + [(k, False) for k in diff]
    return [Pair(a, b, s, 1, i + 1) for i, ((a, b), s) in enumerate(labelled)]


def write_pairs_csv(pairs: Iterable[Pair], path: Path, folds: bool = False) -> None:
    """Write pairs as a `path_a,path_b,same` CSV with a header, paths as given; with folds,
    a fourth column `fold` keeps each pair's fold (read back by read_pairs)."""
    path = Path(path)
    header = ["path_a", "path_b", "same"] + (["fold"] if folds else [])
    try:
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for p in pairs:
                row = [str(p.path_a), str(p.path_b), 1 if p.same else 0]
                w.writerow(row + [p.fold] if folds else row)
    except OSError as exc:
        raise FacecmpError(f"{path}: cannot write pairs file ({exc.strerror or exc})") from None


def pair_identities(path: str | Path, folds: str | None = None) -> set[str]:
    """Identity folder names appearing in a pairs file (optionally only some folds)."""
    pairs = read_pairs(path)
    if folds:
        pairs = select_folds(pairs, folds)
    return {p.parent.name for pair in pairs for p in (pair.path_a, pair.path_b)}
