"""How the gallery's search scales: identification latency per query against synthetic
galleries of 10,000 to 1,000,000 embeddings, exact and faiss, and a real SQLite gallery.

Usage (faiss-cpu for the faiss rows: pip install ".[faiss]"):
    python tools/gallery_benchmark.py [--exact 10000 100000 1000000] [--faiss 100000 1000000]
        [--hnsw 100000] [--queries 300] [--sqlite 100000] [--out outputs/gallery_benchmark]
    python tools/gallery_benchmark.py --lfw     # the LFW distances the synthetic faces imitate

Every figure times the code `facecmp identify` runs for a face once its embedding is known:
gallery_index.searcher (ExactSearch or FaissSearch, the centroid rule) and
identification.name_vectors (top-k people, their distances, the name within the threshold).
Synthetic people (one embedding each unless --per-person: a gallery of N embeddings of k photos
per person searches N/k rows) are drawn so that their distances resemble the bundled identity
model's on LFW (docs/gallery.md, Scale); queries are fresh noisy copies of enrolled people and
strangers. Writes results.json, results.csv and latency.png under --out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_benchmark import cpu_name, load_average  # noqa: E402

DIM = 512
# Synthetic faces: a unit centre per person, sqrt(SHARED) along one direction common to all
# faces and the rest along a random direction whose variance falls as k^-DECAY over the axes;
# a photo is its person's centre plus noise whose variance falls as k^-NOISE_DECAY over the
# same axes (pose and light move a face along the directions that tell people apart), of norm
# NOISE * exp(SPREAD * N(0, 1)) (some photos are far worse than others), normalised. Fitted to
# 300 LFW photos of 75 people embedded by the bundled model (docs/gallery.md, Scale).
SHARED, DECAY, NOISE, NOISE_DECAY, SPREAD = 0.5, 0.85, 0.6, 1.2, 0.4


def _spectrum(decay: float) -> np.ndarray:
    """Per-axis scales whose squares fall as k^-decay, summing to one."""
    scales = (np.arange(1, DIM + 1) ** (-decay / 2)).astype(np.float32)
    return scales / np.sqrt(np.sum(scales**2))


@dataclass
class Synthetic:
    """A synthetic gallery and its queries; truth is the person of each query, -1 for a stranger."""

    vectors: np.ndarray  # n x DIM, rows of person labels[i]
    labels: np.ndarray  # n person ids
    queries: np.ndarray
    truth: np.ndarray


def centres(people: int, rng: np.random.Generator, common: np.ndarray) -> np.ndarray:
    """people unit centres: the common direction and an anisotropic random one (see SHARED)."""
    scales = _spectrum(DECAY)
    out = np.empty((people, DIM), np.float32)
    for i in range(0, people, 65536):  # in chunks: a million people never need two copies
        w = rng.standard_normal((min(65536, people - i), DIM), dtype=np.float32) * scales
        w *= np.float32(np.sqrt(1 - SHARED)) / np.linalg.norm(w, axis=1, keepdims=True)
        out[i : i + len(w)] = w + np.float32(np.sqrt(SHARED)) * common
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def copies(centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One noisy photo of each centre's person (see NOISE), L2-normalised, made in chunks."""
    scales = _spectrum(NOISE_DECAY)
    out = np.array(centre, dtype=np.float32)
    for i in range(0, len(out), 65536):
        part = out[i : i + 65536]
        size = NOISE * np.exp(SPREAD * rng.standard_normal((len(part), 1))).astype(np.float32)
        part += size * scales * rng.standard_normal(part.shape, dtype=np.float32)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return out


def synthetic(embeddings: int, queries: int, per_person: int = 1, strangers: float = 0.3,
              seed: int = 0) -> Synthetic:
    """A gallery of `embeddings` photos, per_person each, and queries of which a `strangers`
    share are people not enrolled."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(DIM).astype(np.float32)
    common /= np.linalg.norm(common)
    people = -(-embeddings // per_person)
    known = centres(people, rng, common)
    labels = np.repeat(np.arange(people), per_person)[:embeddings]
    vectors = copies(known[labels], rng) if per_person > 1 else copies(known, rng)[:embeddings]
    n_strangers = int(round(queries * strangers))
    asked = rng.choice(people, queries - n_strangers, replace=people < queries - n_strangers)
    q = np.concatenate([copies(known[asked], rng), copies(centres(n_strangers, rng, common), rng)])
    truth = np.concatenate([asked, np.full(n_strangers, -1)])
    order = rng.permutation(len(q))
    return Synthetic(vectors, labels, q[order], truth[order])


def distance_stats(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Cosine distances of all pairs: the same-person median and the different-person mean and sd."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    iu = np.triu_indices(len(v), 1)
    dist = (1 - v @ v.T)[iu]
    same = (labels[:, None] == labels[None, :])[iu]
    d, e = dist[same], dist[~same]
    return {"same_median": float(np.median(d)), "same_p10": float(np.percentile(d, 10)),
            "same_p90": float(np.percentile(d, 90)), "different_mean": float(e.mean()),
            "different_sd": float(e.std()), "different_p1": float(np.percentile(e, 1))}


def lfw_distances(people: int = 75, photos: int = 4, seed: int = 0) -> dict[str, float]:
    """distance_stats of real faces, as the constants above were fitted: the first `photos`
    LFW photos of `people` drawn among those with that many, embedded by the bundled model."""
    import facecmp
    from facecmp.datasets import data_root

    lfw = data_root() / "lfw"
    if not lfw.is_dir():
        raise SystemExit(f"error: no LFW photos at {lfw}; set FACECMP_DATA")
    folders = [p for p in sorted(lfw.iterdir()) if len(list(p.glob("*.jpg"))) >= photos]
    chosen = sorted(np.random.default_rng(seed).choice(len(folders), people, replace=False))
    paths = [str(f) for i in chosen for f in sorted(folders[i].glob("*.jpg"))[:photos]]
    emb = facecmp.embed(paths)
    return distance_stats(emb.vectors[emb.ok], np.repeat(chosen, photos)[emb.ok])


# -- timing the identify path ------------------------------------------------------------------


def latencies(index, queries: np.ndarray, top_k: int, threshold: float, seconds: float = np.inf,
              at_least: int = 20) -> tuple[np.ndarray, list[tuple]]:
    """Seconds per query, one query at a time through name_vectors as identify names a face,
    and the answers; stops after `seconds` once at_least queries were timed."""
    from facecmp.identification import name_vectors

    out: list[float] = []
    answers: list[tuple] = []
    start = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        answers += name_vectors(index, q[None], top_k, threshold)
        out.append(time.perf_counter() - t)
        if len(out) >= at_least and time.perf_counter() - start > seconds:
            break
    return np.array(out), answers


def named(index, queries: np.ndarray, top_k: int, threshold: float, batch: int) -> tuple[list, float]:
    """name_vectors of every query in batches, and the queries per second it managed."""
    from facecmp.identification import name_vectors

    out: list[tuple] = []
    start = time.perf_counter()
    for i in range(0, len(queries), batch):
        out += name_vectors(index, queries[i : i + batch], top_k, threshold)
    return out, len(queries) / (time.perf_counter() - start)


def summary(seconds: np.ndarray) -> dict[str, float]:
    """p50, p95 and mean latency in milliseconds, and how many queries were timed."""
    ms = 1000 * seconds
    return {"p50_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "mean_ms": round(float(ms.mean()), 2), "timed": len(ms)}


def accuracy(results: list[tuple], truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """Rank-1 of enrolled people's queries and the share of strangers named at the threshold."""
    from facecmp.identification import UNKNOWN

    top = np.array([c[0][0] if c else "" for _, _, c in results])
    known = truth >= 0
    want = np.array([names[t] if t >= 0 else "" for t in truth])  # person position t is label t
    strangers_named = np.array([n != UNKNOWN for n, _, _ in results])[~known]
    return {"rank1": round(float((top[known] == want[known]).mean()), 4) if known.any() else None,
            "strangers_named": round(float(strangers_named.mean()), 4) if (~known).any() else None}


def recall_at_1(exact: list[tuple], approx: list[tuple], truth: np.ndarray) -> dict[str, float]:
    """How often the approximate search's nearest person is exact search's: all queries,
    enrolled people's and strangers'."""
    same = np.array([(a[2][0][0] if a[2] else None) == e[2][0][0] for e, a in zip(exact, approx)])
    known = truth >= 0
    return {"all": round(float(same.mean()), 4), "enrolled": round(float(same[known].mean()), 4),
            "strangers": round(float(same[~known].mean()), 4) if (~known).any() else None}


def rss_gb() -> float:
    """This process's resident memory now, in GB (Linux)."""
    try:
        return round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9, 2)
    except (OSError, ValueError, IndexError):
        return float("nan")


# -- the benchmark's parts ---------------------------------------------------------------------


def tier(size: int, exact: bool, fast: bool, hnsw: bool, args: argparse.Namespace,
         threshold: float, work: Path) -> list[dict]:
    """Rows of results for one gallery size: exact search (always run: recall is measured
    against it), and where asked the faiss index identify uses and the HNSW index it does not."""
    from facecmp.gallery_index import searcher, snapshot_of

    start = time.perf_counter()
    syn = synthetic(size, args.queries, args.per_person, args.strangers, args.seed)
    made = time.perf_counter() - start
    snap = snapshot_of(syn.vectors, syn.labels)
    del syn.vectors  # the snapshot holds its own normalised copy
    base = {"embeddings": size, "rows": len(snap.names), "queries": len(syn.queries),
            "synthesis_s": round(made, 1)}
    rows = []
    start = time.perf_counter()
    index = searcher(snap, work / "unused.faiss", "exact")
    built = time.perf_counter() - start
    truth, qps = named(index, syn.queries, args.top_k, threshold, args.batch)  # the reference
    if exact:
        rows.append({**base, "search": "exact", "index": "numpy matrix (ExactSearch)",
                     "build_s": round(built, 2), **summary(latencies(index, syn.queries, args.top_k,
                                                                     threshold, args.seconds)[0]),
                     "batch": args.batch, "batched_queries_per_s": round(qps, 1),
                     **accuracy(truth, syn.truth, snap.names), "recall_at_1": 1.0, "rss_gb": rss_gb()})
    del index
    if fast:
        rows.append({**base, **faiss_row(snap, syn, truth, args, threshold, work / f"g{size}.faiss")})
    if hnsw:
        rows.append({**base, **hnsw_row(snap, syn, truth, args)})
    return rows


def faiss_row(snap, syn: Synthetic, truth: list[tuple], args: argparse.Namespace, threshold: float,
              path: Path) -> dict:
    """FaissSearch as identify builds it: build and load times, latency, recall against exact
    search, and recall and latency as the share of lists searched varies."""
    from facecmp.gallery_index import faiss_probes, searcher

    start = time.perf_counter()
    index = searcher(snap, path, "faiss")
    built = time.perf_counter() - start
    start = time.perf_counter()
    searcher(snap, path, "faiss")  # a second process: the index read back from its file
    loaded = time.perf_counter() - start
    single, _ = latencies(index, syn.queries, args.top_k, threshold, args.seconds)
    results, qps = named(index, syn.queries, args.top_k, threshold, args.batch)
    lists, probes = index.index.nlist, index.index.nprobe
    sweep = []
    for scan in args.scan:  # the same index searching more or fewer lists
        index.index.nprobe = faiss_probes(lists, scan)
        some = slice(0, min(len(syn.queries), args.sweep_queries))
        seconds, answers = latencies(index, syn.queries[some], args.top_k, threshold)
        sweep.append({"scan": scan, "nprobe": index.index.nprobe,
                      **{f"single_{k}": v for k, v in summary(seconds).items()},
                      "recall_at_1": recall_at_1(truth[some], answers, syn.truth[some])["all"]})
    index.index.nprobe = probes
    file_gb = path.stat().st_size / 1e9
    path.unlink()
    return {"search": "faiss", "index": f"IVF-Flat IP, {lists} lists, nprobe {probes}",
            "build_s": round(built, 2), "load_s": round(loaded, 2),
            "index_file_gb": round(file_gb, 3), **summary(single),
            "batch": args.batch, "batched_queries_per_s": round(qps, 1),
            **accuracy(results, syn.truth, snap.names),
            "recall_at_1": recall_at_1(truth, results, syn.truth)["all"],
            "recall_at_1_parts": recall_at_1(truth, results, syn.truth), "scan_sweep": sweep,
            "rss_gb": rss_gb()}


class _Hnsw:
    """faiss's HNSW over the same rows, behind the searcher interface name_vectors uses (the
    index facecmp used before IVF; timed here for comparison only)."""

    def __init__(self, snap, ef: int) -> None:
        import faiss

        self.snap, self.ef = snap, ef
        self.index = faiss.IndexHNSWFlat(snap.vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        self.index.add(snap.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows (one row per person here), best first."""
        self.index.hnsw.efSearch = max(self.ef, k)
        sims, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return rows, sims


def hnsw_row(snap, syn: Synthetic, truth: list[tuple], args: argparse.Namespace) -> dict:
    """Build time, latency and recall of faiss's HNSW (M=32) at efSearch 128 and 512."""
    if len(snap.names) != len(snap.vectors):
        raise SystemExit("error: --hnsw needs --per-person 1 (one row per person)")
    start = time.perf_counter()
    index = _Hnsw(snap, 128)
    built = time.perf_counter() - start
    out: dict = {"search": "hnsw", "index": "HNSW Flat IP, M=32 (not used by facecmp)",
                 "build_s": round(built, 2)}
    for ef in (128, 512):
        index.ef = ef
        single, _ = latencies(index, syn.queries, args.top_k, 1.0, args.seconds)
        answers, qps = named(index, syn.queries, args.top_k, 1.0, args.batch)
        if ef == 128:
            out.update(summary(single), batch=args.batch, batched_queries_per_s=round(qps, 1),
                       recall_at_1=recall_at_1(truth, answers, syn.truth)["all"])
        else:
            out["ef_512"] = {**summary(single), "recall_at_1": recall_at_1(truth, answers, syn.truth)["all"]}
    out["rss_gb"] = rss_gb()
    return out


def write_gallery(path: Path, syn: Synthetic) -> str:
    """A new gallery file of the synthetic photos under the bundled identity model's key, one
    Gallery.add_image (one transaction) per photo; the key."""
    from facecmp.gallery import Gallery

    with Gallery(path, create=True) as g:
        _, key = g.use_model()  # the bundled identity model: its key, and its 512-d vectors
        for i, (label, vector) in enumerate(zip(syn.labels, syn.vectors)):
            digest = hashlib.sha256(f"synthetic photo {i}".encode()).hexdigest()
            g.add_image(f"person_{label:07d}", f"/synthetic/{i}.jpg", digest, None, 1, vector, key)
            if (i + 1) % 20000 == 0:
                print(f"sqlite: {i + 1} of {len(syn.labels)} written", file=sys.stderr, flush=True)
    return key


def sqlite_gallery(size: int, args: argparse.Namespace, threshold: float, work: Path) -> dict:
    """A real gallery file of `size` synthetic embeddings written through Gallery.add_image
    (one transaction per photo, as enrol writes), then opened, snapshotted and searched."""
    from facecmp.gallery import Gallery
    from facecmp.gallery_index import FAISS_MIN_ROWS

    syn = synthetic(size, args.queries, args.per_person, args.strangers, args.seed)
    path = work / "gallery.db"
    out: dict = {"embeddings": size, "people": int(syn.labels.max()) + 1, "written_by": "Gallery.add_image"}
    start = time.perf_counter()
    key = write_gallery(path, syn)
    seconds = time.perf_counter() - start
    out["write_s"], out["writes_per_s"] = round(seconds, 1), round(size / seconds, 1)
    out["file_mb"] = round(sum(p.stat().st_size for p in work.glob("gallery.db*")) / 1e6, 1)
    start = time.perf_counter()
    with Gallery(path) as g:
        out["open_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        g.snapshot()
        out["snapshot_s"] = round(time.perf_counter() - start, 2)
        for how in ("exact", "faiss"):
            start = time.perf_counter()
            index = g.searcher(how)  # read from the database, as the first identify of a process does
            out[f"first_searcher_{how}_s"] = round(time.perf_counter() - start, 2)
            out[f"identify_{how}"] = summary(latencies(index, syn.queries, args.top_k, threshold, args.seconds)[0])
    with Gallery(path) as g:
        start = time.perf_counter()
        g.searcher("faiss")  # another process: the index file is read, not rebuilt
        out["first_searcher_faiss_from_file_s"] = round(time.perf_counter() - start, 2)
        g.add_image("one_more", "/synthetic/one_more.jpg", "0" * 64, None, 1, syn.queries[0], key)
        for how in ("exact", "faiss"):
            start = time.perf_counter()
            g.searcher(how)
            out[f"after_one_enrolment_{how}_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        out["integrity_check"] = g.db.execute("PRAGMA integrity_check").fetchone()[0]
        out["integrity_check_s"] = round(time.perf_counter() - start, 2)
        out["auto_picks"] = type(g.searcher("auto")).__name__
        out["faiss_min_rows"] = FAISS_MIN_ROWS
    return out


def write_outputs(result: dict, out: Path) -> None:
    """results.json, results.csv (a row per size and search) and latency.png under out."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    columns = ["embeddings", "rows", "search", "index", "build_s", "load_s", "p50_ms", "p95_ms",
               "mean_ms", "timed", "batch", "batched_queries_per_s", "recall_at_1", "rank1",
               "strangers_named", "index_file_gb", "rss_gb"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result["tiers"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for search, colour in (("exact", "tab:blue"), ("faiss", "tab:orange"), ("hnsw", "tab:green")):
        mine = sorted((r for r in result["tiers"] if r["search"] == search), key=lambda r: r["rows"])
        if mine:
            x = [r["rows"] for r in mine]
            ax.plot(x, [r["p50_ms"] for r in mine], "o-", color=colour, label=f"{search} p50")
            ax.plot(x, [r["p95_ms"] for r in mine], "o--", color=colour, alpha=0.6, label=f"{search} p95")
    ax.axhline(50, color="grey", lw=0.8, ls=":", label="50 ms")
    ax.set(xscale="log", yscale="log", xlabel="searched rows (people)", ylabel="ms per query (one at a time)",
           title=f"identify's search, {result['cpu']}, 2 shared cores")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line (defaults: the run docs/gallery.md reports)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                        help="gallery sizes (embeddings) to time exact search at")
    parser.add_argument("--faiss", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="gallery sizes to time the faiss index at (recall against exact search)")
    parser.add_argument("--hnsw", type=int, default=100_000,
                        help="the gallery size at which to time faiss's HNSW too, for comparison (0: none)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--strangers", type=float, default=0.3, help="share of queries not enrolled")
    parser.add_argument("--per-person", type=int, default=1, help="enrolled photos per person")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="queries per call for batched throughput")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="stop timing single queries of a size after this long (20 at least)")
    parser.add_argument("--scan", type=float, nargs="*", default=[0.05, 0.1, 0.25, 0.5],
                        help="shares of the inverted lists to search in the faiss sweep")
    parser.add_argument("--sweep-queries", type=int, default=100, help="queries of each sweep point")
    parser.add_argument("--sqlite", type=int, default=100_000, help="embeddings of the real gallery file (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lfw", action="store_true",
                        help="only print the LFW distances the synthetic faces were fitted to (embeds 300 photos)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "gallery_benchmark")
    return parser.parse_args(argv)


def refusal(args: argparse.Namespace) -> str | None:
    """The one line that refuses these arguments, if any."""
    if min([*args.exact, *args.faiss, args.queries, args.per_person, args.top_k, args.batch,
            args.sweep_queries, 1]) < 1 or args.sqlite < 0 or args.hnsw < 0:
        return "sizes, --queries, --per-person, --top-k, --batch and --sweep-queries must be positive"
    if not 0 <= args.strangers <= 1 or not all(0 < x <= 1 for x in args.scan):
        return "--strangers must be within 0-1 and --scan within (0, 1]"
    if (args.faiss or args.sqlite or args.hnsw) and _faiss_version() is None:
        return "faiss is not installed: pip install '.[faiss]' (or --faiss with no sizes, --sqlite 0 --hnsw 0)"
    return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    from facecmp.api import load_model
    from facecmp.errors import FacecmpError

    args = parse(argv)
    if args.lfw:
        print(json.dumps(lfw_distances(seed=args.seed), indent=2))
        return 0
    try:
        why = refusal(args)
        threshold = None if why else load_model().meta.threshold_for("cosine")[1]
    except FacecmpError as exc:
        why = str(exc)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started, load_before = time.perf_counter(), load_average()
    result: dict = {
        "command": "python tools/gallery_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "faiss": _faiss_version(), "threshold": threshold, "top_k": args.top_k,
        "synthetic": {"shared": SHARED, "decay": DECAY, "noise": NOISE, "noise_decay": NOISE_DECAY,
                      "spread": SPREAD, "per_person": args.per_person, "strangers": args.strangers,
                      "distances": distance_stats(*_sample(args.seed))},
        "tiers": [],
    }
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        for size in sorted({*args.exact, *args.faiss, *([args.hnsw] if args.hnsw else [])}):
            print(f"gallery of {size} embeddings ...", file=sys.stderr, flush=True)
            result["tiers"] += tier(size, size in args.exact, size in args.faiss, size == args.hnsw,
                                    args, threshold, Path(tmp))
        if args.sqlite:
            print(f"SQLite gallery of {args.sqlite} embeddings ...", file=sys.stderr, flush=True)
            result["sqlite"] = sqlite_gallery(args.sqlite, args, threshold, Path(tmp))
    result["maxrss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    result["load_average_before_after"] = [load_before, load_average()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_outputs(result, args.out)
    for r in result["tiers"]:
        print(f"{r['embeddings']:>9} {r['search']:<6} p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms  "
              f"batched {r['batched_queries_per_s']:8.1f}/s  recall@1 {r['recall_at_1']}")
    print(f"wrote {args.out}/results.json, results.csv, latency.png in {result['seconds']} s")
    return 0


def _faiss_version() -> str | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss.__version__


def _sample(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """300 photos of 75 synthetic people, the size of the LFW sample the constants were fitted to."""
    syn = synthetic(300, 0, per_person=4, seed=seed)
    return syn.vectors, syn.labels


if __name__ == "__main__":
    sys.exit(main())
