"""Load test of `dcgan serve` on loopback: answered, 503s, errors, p50/p99 latency per client count.

Past its generation queue the server answers 503 with Retry-After at once (counted apart from
errors; the client then waits as Retry-After says), and `/healthz` must keep answering under the
load: its median and worst latency are reported.

Starts the real server (waitress, its default threads) in a subprocess, then for each client count
(`--clients 1,2,4,8,16`) that many client threads send `/api/generate` requests for one image with
random seeds for a bounded time; then the largest count asks for 16 images a request, a sustained
overload. Traffic goes only to 127.0.0.1 and stops by itself.

    python benchmarks/serve_load.py --checkpoint runs/00000-folder-cpu-v1 [--clients 1,2,4,8,16 --seconds 15] \\
        [--out docs/results/serve-load]

With `--out`, results.json (the machine, the precision the server generates in (float32: `dcgan
serve` on its default device, the CPU, has no mixed precision), the command line, the protocol and
every row of the table) and results.md go there.
"""

from __future__ import annotations

import argparse
import math
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from dcgan.devices import machine_name
from held_out import check_results_folder, command_line, write_results


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not come up")


def run_scenario(url: str, num: int, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = busy = 0
    error_kinds: dict[str, int] = {}
    health_ms: list[float] = []
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def health() -> None:
        while time.time() < stop_at:
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
                    response.read()
            except (urllib.error.URLError, OSError):
                pass
            health_ms.append((time.perf_counter() - start) * 1000)
            time.sleep(0.1)

    def client(index: int) -> None:
        nonlocal errors, busy
        rng = random.Random(index)
        while time.time() < stop_at:
            seed = rng.randrange(0, 2**31)
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{url}/api/generate?seed={seed}&num={num}", timeout=30) as response:
                    response.read()
                    ok = response.status == 200
            except urllib.error.HTTPError as error:
                ok = False
                if error.code == 503:  # the queue is full: back off as Retry-After says, as a client should
                    with lock:
                        busy += 1
                    time.sleep(float(error.headers.get("Retry-After", 1)))
                    continue
                with lock:
                    kind = f"HTTP {error.code}"
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1
            except (urllib.error.URLError, OSError) as error:
                ok = False
                with lock:
                    kind = f"{type(error).__name__}: {error}"[:120]
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1
            elapsed = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=health)]
    begin = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.time() - begin
    latencies.sort()
    def p(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    return {"num": num, "requests": len(latencies), "rps": len(latencies) / wall,
            "images_per_s": len(latencies) * num / wall, "p50_ms": p(0.50), "p99_ms": p(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"), "errors": errors,
            "busy": busy, "healthz_max_ms": max(health_ms, default=float("nan")),
            "healthz_p50_ms": statistics.median(health_ms) if health_ms else float("nan"), "error_kinds": error_kinds,
            "clients": clients}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint",
                        help="run folder or generator file (default: the default preset, random weights)")
    parser.add_argument("--clients", default="1,2,4,8,16", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", help="write results.json and results.md to this folder (default: print only)")
    args = parser.parse_args()
    out = check_results_folder(args.out) if args.out else None

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from dcgan.checkpoint import save_generator
            from dcgan.config import resolve_config
            from dcgan.models import build_generator, generator_kwargs

            kwargs = generator_kwargs(resolve_config("cpu-v1"), 32, 3)
            checkpoint = str(Path(tmp) / "generator.safetensors")
            save_generator(build_generator(**kwargs), kwargs, Path(checkpoint))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # The server's log goes to a file: an unread pipe would fill up and stall the server.
        server_log = open(Path(tmp) / "server.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "dcgan", "serve", "--checkpoint", checkpoint,
                                   "--port", str(port)], stdout=server_log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(url)
            counts = [int(count) for count in args.clients.split(",")]
            print(f"client counts {counts}, {args.seconds:g} s per scenario, server on {url}")
            print(f"{'clients':>7} {'images/req':>10} {'answered':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
                  f"{'503s':>5} {'errors':>6} {'healthz p50/max ms':>19}")
            rows = []
            for clients, num in [(count, 1) for count in counts] + [(max(counts), 16)]:
                r = run_scenario(url, num, clients, args.seconds)
                rows.append(r)
                print(f"{clients:>7} {num:>10} {r['requests']:>9} {r['rps']:>7.1f} {r['p50_ms']:>7.1f} "
                      f"{r['p99_ms']:>7.1f} {r['busy']:>5} {r['errors']:>6} "
                      f"{r['healthz_p50_ms']:>9.1f}/{r['healthz_max_ms']:<9.1f}")
                for kind, count in r["error_kinds"].items():
                    print(f"  {count} x {kind}")
        finally:
            server.terminate()
            server.wait(timeout=10)
            server_log.close()
    if out is not None:
        write_report(out, args, counts, rows)


def finite(value):
    """A figure for JSON: NaN (no request answered, no /healthz answer) as null, floats to 0.01."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 2)
    return value


def write_report(out: Path, args, counts: list[int], rows: list[dict]) -> None:
    """results.json and results.md in `out`: every row of the table printed."""
    def cell(value, spec: str = ".1f") -> str:
        return "-" if value is None else format(value, spec)

    rows = [{key: finite(value) for key, value in row.items()} for row in rows]
    table = [f"`dcgan serve` under load on loopback: {args.seconds:g} s per scenario, "
             f"{'the generator of ' + args.checkpoint if args.checkpoint else 'the cpu-v1 generator, random weights'}"
             f"; float32 on {machine_name()}.", "",
             "| clients | images/request | answered | requests/s | images/s | p50 ms | p99 ms | 503s | errors | "
             "/healthz p50 ms | /healthz slowest ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['clients']} | {r['num']} | {r['requests']} | {cell(r['rps'])} | {cell(r['images_per_s'])} "
                     f"| {cell(r['p50_ms'])} | {cell(r['p99_ms'])} | {r['busy']} | {r['errors']} | "
                     f"{cell(r['healthz_p50_ms'])} | {cell(r['healthz_max_ms'])} |")
    errors = [f"- {r['clients']} clients, {r['num']} images/request: {count} x {kind}"
              for r in rows for kind, count in r["error_kinds"].items()]
    if errors:
        table += ["", "Errors:", *errors]
    protocol = {
        "measured": "answered requests, requests/s, images/s, p50/p99/mean latency of answered /api/generate "
                    "requests, 503s (queue full) and errors per client count, and /healthz latency under that load",
        "server": "dcgan serve --checkpoint CHECKPOINT --port PORT on 127.0.0.1 in a subprocess: waitress with its "
                  "default threads (--threads 10, 2 kept for /healthz and the pages), default --torch-threads, "
                  "--device cpu, float32",
        "generator": args.checkpoint or "the cpu-v1 preset's generator (32x32 RGB), random weights",
        "clients": f"for each count in {counts}, that many threads send GET /api/generate?seed=S&num=1 back to back "
                   f"(seeds from random.Random(thread index)) for {args.seconds:g} s; then {max(counts)} threads with "
                   f"num=16, a sustained overload",
        "503": "counted apart from errors; the client then waits as its Retry-After says",
        "latency": "wall time of each answered (HTTP 200) request, read whole; p50 and p99 by rank",
        "healthz": "one more thread polls GET /healthz every 0.1 s during each scenario; its median and slowest",
        "seconds_per_scenario": args.seconds}
    write_results(out, args, "\n".join(table) + "\n", machine=machine_name(), precision=["fp32"],
                  command=command_line(), protocol=protocol, rows=rows)


if __name__ == "__main__":
    main()
