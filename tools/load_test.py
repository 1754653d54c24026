"""Load test of `facecmp serve` on this machine's loopback: many concurrent compare requests
with LFW pairs whose answers are known, every answer checked.

Usage:
    python tools/load_test.py [--pairs-file ../shared/data/lfw-pairs.txt] [--pairs 100]
        [--requests 1000] [--concurrency 200] [--threads N] [--max-seconds 600] [--out outputs/load_test.json]

The server runs as a subprocess on 127.0.0.1 (a free port). First each of --pairs pairs of
LFW View 2 fold 1 (half same person, half not) is sent once, one at a time: those answers
are the reference, and their verdicts are scored against the truth. Then the rest of
--requests go out with --concurrency in flight at once; each answer must be 200 and agree
with the reference (the same verdict, the distance within 1e-4). Reported: throughput and
latency (p50, p95, max) of the concurrent phase, and the server's RSS every 100 requests
(after the first 100 and after all of them among them). Exit 1 when any check failed.
Needs httpx and the serve extra (pip install ".[serve,test]").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout

from facecmp.datasets import data_root  # noqa: E402
from facecmp.pairs import read_pairs  # noqa: E402

HOST = "127.0.0.1"  # loopback only: this tool never sends a request anywhere else


def rss_mb(pid: int) -> float:
    """A process's resident set size in MB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def choose_pairs(path: Path, n: int) -> list[tuple[Path, Path, bool]]:
    """n pairs of fold 1, half of one person and half of two, in file order."""
    fold = [p for p in read_pairs(path) if p.fold == 1]
    same = [p for p in fold if p.same][: (n + 1) // 2]
    other = [p for p in fold if not p.same][: n // 2]
    return [(p.path_a, p.path_b, p.same) for p in same + other]


def start_server(threads: int | None, log: Path) -> tuple[subprocess.Popen, str]:
    """`facecmp serve` on a free loopback port, its output in log, once /api/health answers."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "facecmp.cli", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--threads", str(threads)] if threads else []
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:  # a file, not a pipe nobody reads: the server never blocks on it
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not answer within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def run(url: str, pid: int, pairs: list, photos: dict, args: argparse.Namespace) -> dict:
    """Both phases; the figures and every failed check."""
    problems: list[str] = []
    rss: dict[int, float] = {}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=args.max_seconds, limits=limits) as client:
        async def compare(i: int) -> tuple[int, float, dict | None]:
            a, b, _ = pairs[i % len(pairs)]
            files = {"a": (a.name, photos[a], "image/jpeg"), "b": (b.name, photos[b], "image/jpeg")}
            start = time.perf_counter()
            try:
                r = await client.post("/api/compare", files=files)
            except httpx.HTTPError as exc:
                return i, time.perf_counter() - start, {"error": f"{type(exc).__name__}: {exc}"}
            body = r.json() if r.headers.get("content-type") == "application/json" else {}
            return i, time.perf_counter() - start, body if r.status_code == 200 else {"error": f"{r.status_code} {body}"}

        reference = []
        for i in range(len(pairs)):  # one at a time: the reference answers
            _, _, body = await compare(i)
            if "error" in body:
                raise RuntimeError(f"reference pair {i} failed: {body['error']}")
            if body["same"] != (body["distance"] <= body["threshold"]):
                problems.append(f"pair {i}: verdict {body['verdict']} disagrees with its own distance")
            reference.append(body)
        rss[len(pairs)] = rss_mb(pid)

        done, latencies, gate = len(pairs), [], asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> None:
            nonlocal done
            async with gate:
                _, seconds, body = await compare(i)
            ref = reference[i % len(pairs)]
            if "error" in body:
                problems.append(f"request {i}: {body['error']}")
            elif body["verdict"] != ref["verdict"] or abs(body["distance"] - ref["distance"]) > 1e-4:
                problems.append(f"request {i}: {body['verdict']} {body['distance']} != reference "
                                f"{ref['verdict']} {ref['distance']}")
            latencies.append(seconds)
            done += 1
            if done % 100 == 0:
                rss[done] = rss_mb(pid)

        health: list[float] = []

        async def probe() -> None:  # the server must go on answering while it is busy
            while True:
                t = time.perf_counter()
                ok = (await client.get("/api/health")).status_code == 200
                health.append(time.perf_counter() - t if ok else float("inf"))
                await asyncio.sleep(1)

        start = time.perf_counter()
        tasks = [asyncio.create_task(one(i)) for i in range(len(pairs), args.requests)]
        prober = asyncio.create_task(probe())
        finished, late = await asyncio.wait(tasks, timeout=args.max_seconds)
        prober.cancel()
        for task in late:
            task.cancel()
        if late:
            problems.append(f"{len(late)} requests unanswered after {args.max_seconds} s")
        elapsed = time.perf_counter() - start
        rss[done] = rss_mb(pid)
    right = sum(ref["same"] == truth for ref, (_, _, truth) in zip(reference, pairs))
    return {"pairs": len(pairs), "requests": done, "concurrency": args.concurrency,
            "server_threads": args.threads or f"one per CPU ({os.cpu_count()})",
            "reference_accuracy": round(right / len(pairs), 4),
            "concurrent": {"requests": len(latencies), "seconds": round(elapsed, 2),
                           "throughput_rps": round(len(latencies) / elapsed, 2) if elapsed else None,
                           "latency_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
                           "latency_p95_s": round(percentile(latencies, 95), 3) if latencies else None,
                           "latency_max_s": round(max(latencies), 3) if latencies else None,
                           "health_checks": len(health), "health_max_s": round(max(health), 3) if health else None},
            "rss_mb": {str(k): round(v, 1) for k, v in sorted(rss.items())},
            "problems": len(problems), "first_problems": problems[:20]}


def main() -> int:
    """Parse options, run the server and both phases, write and print the result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs-file", type=Path, default=data_root() / "lfw-pairs.txt")
    ap.add_argument("--pairs", type=int, default=100, help="distinct pairs (the reference phase)")
    ap.add_argument("--requests", type=int, default=1000, help="all requests, the reference phase included")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--threads", type=int, help="the server's worker threads (facecmp serve --threads)")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop the concurrent phase after this")
    ap.add_argument("--out", type=Path, default=Path("outputs/load_test.json"))
    args = ap.parse_args()
    if not 1 <= args.pairs < args.requests <= 20000 or not 1 <= args.concurrency <= 1000:
        ap.error("need 1 <= --pairs < --requests <= 20000 and 1 <= --concurrency <= 1000")
    pairs = choose_pairs(args.pairs_file, args.pairs)
    photos = {p: p.read_bytes() for a, b, _ in pairs for p in (a, b)}
    proc, url = start_server(args.threads, args.out.with_suffix(".server.log"))
    try:
        result = asyncio.run(run(url, proc.pid, pairs, photos, args))
    finally:
        stop_server(proc)
    result["command"] = " ".join(["python", "tools/load_test.py"] + sys.argv[1:])
    result["cpus"] = os.cpu_count()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
