"""Hostile input, at random and on purpose: the HTTP API on a live server, and every kind of file
the toolkit reads. Nothing may answer 5xx, hang, print a traceback or take unbounded memory."""

import json
import random
import socket
import threading
import time

import pytest
import torch

from dcgan.checkpoint import save_generator
from dcgan.models import build_generator

KWARGS = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
REQUESTS = 400

PATHS = ["/", "/healthz", "/api/models", "/api/generate", "/api/interpolate", "/runs", "/models/cars",
         "/models/cars/samples.png", "/runs/00000-run/progress.gif", "/runs/00000-run/config.json",
         "/runs/00000-run/samples/fakes-kimg0000000.06.png", "/runs/00000-run/../../etc/passwd",
         "/runs/00001-hostile/summary.json", "/runs/00002-link/config.json", "/static/../x", "//healthz", "/%ff",
         "/api/generate/", "/runs/%2e%2e/x", "/models/%00"]
KEYS = ["seed", "num", "nrow", "model", "format", "class", "to_class", "from", "to", "steps", "download", "x"]
VALUES = ["0", "1", "-1", "64", "65", "10000", "99999999999999999999", "1e5", " 5", "1_000", "٣", "¹", "0x10",
          "png", "json", "gif", "bmp", "cars", "../../etc/passwd", "all", '"', "'", "<script>", "%", "%ff",
          "\x00", "true", "", "a" * 5000]
HEADERS = [("Host", "127.0.0.1"), ("Host", "evil.example"), ("Host", "[::1]"), ("Host", ":::"), ("Host", ""),
           ("If-None-Match", '"' * 50), ("If-None-Match", "W/\"x\", *"), ("Range", "bytes=999999-"),
           ("Accept-Encoding", "gzip;q=2, \xff"), ("Cookie", "a=" + "b" * 4000), ("X-Forwarded-Host", "evil")]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    from waitress.server import create_server

    from dcgan.server import create_app

    folder = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    save_generator(build_generator(**KWARGS), KWARGS, folder / "cars.safetensors")
    runs = folder / "runs"
    (runs / "00000-run" / "samples").mkdir(parents=True)
    (runs / "00000-run" / "config.json").write_text('{"dataset": "folder", "batch_size": 16, "data_root": "/home/x"}')
    (runs / "00000-run" / "metrics.csv").write_text("step,kimg,loss_d\n1,0.1,nan\n2,x,\n")
    (runs / "00001-hostile").mkdir()
    (runs / "00001-hostile" / "config.json").write_text('{"dataset": ["not", "a", "name"], "batch_size": "big"}')
    (runs / "00001-hostile" / "summary.json").write_text('{"best": {"value": {"nested": 1}}, "stop_reason": null}')
    (runs / "00002-link").symlink_to("/etc")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server(create_app([str(folder / "cars.safetensors")], str(runs)), host="127.0.0.1", port=port,
                           threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield port
    server.close()


def hostile_request(rng: random.Random) -> tuple[bytes, list[tuple[str, str]]]:
    path = rng.choice(PATHS)
    if rng.random() < 0.8:
        pairs = [f"{rng.choice(KEYS)}={rng.choice(VALUES)}" for _ in range(rng.randint(1, 5))]
        path += "?" + "&".join(pairs)
    raw = path.encode("utf-8", "surrogatepass")
    if rng.random() < 0.3:  # raw bytes that are not UTF-8, in the query or the path
        junk = bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 4)))
        cut = raw.index(b"=") + 1 if b"=" in raw and rng.random() < 0.7 else len(raw)
        raw = raw[:cut] + junk + raw[cut:]
    raw = raw.replace(b" ", b"%20").replace(b"\x00", b"%00")
    return raw, rng.sample(HEADERS, rng.randint(0, 3))


def send(port: int, raw_path: bytes, headers: list[tuple[str, str]]) -> int:
    """One GET with exactly these bytes (http.client would refuse some of them); the status."""
    if not any(key == "Host" for key, _ in headers):
        headers = [("Host", "127.0.0.1"), *headers]
    request = b"GET " + raw_path + b" HTTP/1.1\r\n"
    request += b"".join(f"{key}: {value}".encode("latin-1", "replace") + b"\r\n" for key, value in headers)
    request += b"Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status >= 400 and b"application/json" in head:
        message = json.loads(body)["error"]
        assert "\n" not in message and "Traceback" not in message, message
    return status


def test_hostile_http_requests_get_no_5xx_and_no_hang(live_server):
    rng = random.Random(2026)
    statuses: dict[int, int] = {}
    slowest = 0.0
    for _ in range(REQUESTS):
        raw_path, headers = hostile_request(rng)
        start = time.monotonic()
        status = send(live_server, raw_path, headers)
        slowest = max(slowest, time.monotonic() - start)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (status, raw_path, headers)
    assert sum(statuses.values()) == REQUESTS and slowest < 30
    assert statuses.get(200, 0) > 20 and sum(n for s, n in statuses.items() if 400 <= s < 500) > 50
    print(f"{REQUESTS} hostile requests: {dict(sorted(statuses.items()))}, slowest {slowest:.2f} s")


FILE_FUZZ = r"""
import json, random, resource, sys, traceback
from pathlib import Path

from dcgan.checkpoint import load_checkpoint, load_generator
from dcgan.config import read_config_file
from dcgan.data import load_dataset
from dcgan.errors import UserError
from dcgan.metrics.fast import FastExtractor
from dcgan.metrics.reference import load_stats
from test_bad_files import (LEAKS, png_bytes, write_checkpoint, write_config, write_fast_extractor,
                            write_generator, write_stats)

folder, per_kind = Path(sys.argv[1]), int(sys.argv[2])
image_dir = folder / "images" / "things"
image_dir.mkdir(parents=True)
readers = {
    "checkpoint.pt": (write_checkpoint, load_checkpoint),
    "generator.safetensors": (write_generator, load_generator),
    "config.yaml": (write_config, read_config_file),
    "stats.npz": (write_stats, load_stats),
    "fast.safetensors": (write_fast_extractor, FastExtractor),
    "images/things/a.png": (lambda p: p.write_bytes(png_bytes()),
                            lambda p: load_dataset("folder", folder / "images", use_cache=False)),
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # bytes flipped, in the header more often (metadata, lengths, names)
        for _ in range(rng.randint(1, 16)):
            position = rng.randrange(min(len(data), 512) if rng.random() < 0.7 else len(data))
            data[position] = rng.randrange(256)
    elif kind == 1:  # cut anywhere
        data = data[:rng.randrange(len(data))]
    elif kind == 2:  # a stretch of another part copied over (lengths and offsets that lie)
        start, length = rng.randrange(len(data)), rng.randint(1, 64)
        source = rng.randrange(len(data))
        data[start:start + length] = data[source:source + length]
    else:  # digits in the metadata made huge: sizes, lengths, shapes
        text = bytes(data)
        positions = [i for i in range(min(len(text), 4096)) if 48 <= text[i] <= 57]
        for position in rng.sample(positions, min(len(positions), rng.randint(1, 4))):
            data[position:position + 1] = b"99999999999"
    return bytes(data)


rng = random.Random(7)
counts = {}
for name, (write, read) in readers.items():
    path = folder / name
    write(path)
    valid = path.read_bytes()
    outcome = {"loaded": 0, "one line": 0}
    for _ in range(per_kind):
        path.write_bytes(mutate(valid, rng))
        try:
            read(path)
            outcome["loaded"] += 1
        except UserError as error:
            message = str(error)
            if "\n" in message or any(leak in message for leak in LEAKS):
                print("FAIL", name, repr(message)[:300])
            outcome["one line"] += 1
        except BaseException as error:
            print("FAIL", name, type(error).__name__, repr(error)[:200], traceback.format_exc()[-600:])
    counts[name] = outcome
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"counts": counts, "peak_mb": round(peak_mb)}))
"""


def test_mutated_files_of_every_kind_are_one_line_with_bounded_memory(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", FILE_FUZZ, str(tmp_path), "60"], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAIL" not in result.stdout, result.stdout[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(sum(outcome.values()) == 60 and outcome["one line"] > 0 for outcome in report["counts"].values())
    assert report["peak_mb"] < 2048, report  # a hostile size was refused, not allocated
    print(report)
