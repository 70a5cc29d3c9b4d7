"""The Space under load: 8 concurrent gradio_client clients, 200 prediction requests, on localhost.

    python bench/bench_space_load.py                      # 8 clients x 200 requests, TResNet-M ML-Decoder
    python bench/bench_space_load.py --model tiny         # the test suite's tiny model (a quick check)
    python bench/bench_space_load.py --requests 400 --marks 50,200,400

The app (spaces/app.py, unchanged, with its queue's ``default_concurrency_limit=2``) runs as its own
process with one local model: by default ``mldecoder-tresnetm-224`` at full size (80 labels, random
weights: the cost of a request does not depend on what the weights are, and nothing is downloaded).
Each request is the ``/classify`` endpoint with one of the Space's example photos.

Printed:
  * requests, errors (anything but "Classified 1 image(s)" is one), throughput;
  * latency p50 / p95 / max, and the p50 against the reference measured in the same run before the
    load: one client alone, one request at a time (the ratio is what the queue adds; with 8 clients
    and 2 slots it is about 4 when the server is the bottleneck);
  * the server's resident set size (VmRSS) and its peak so far (VmHWM, from /proc) after warm-up and
    after each mark (50 and 200 requests by default): "stable memory" is RSS at the last mark close
    to RSS at the first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, Table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "spaces" / "app.py"
EXAMPLES = sorted(p for p in (REPO / "spaces" / "examples").iterdir() if p.suffix.lower() in (".jpg", ".png"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_model(kind: str, folder: Path) -> tuple[str, int]:
    import torch

    import hf_mlcls

    torch.manual_seed(0)
    if kind == "tiny":
        model = hf_mlcls.create_model("q2l-r101-448", backbone="test_resnet", image_size=64, hidden_dim=96,
                                      dim_feedforward=64, id2label={0: "cat", 1: "dog", 2: "car"})
        name = "tiny-q2l"
    else:
        model = hf_mlcls.create_model(kind, id2label={i: f"label {i}" for i in range(80)})
        name = kind
    model.save_pretrained(folder / name)
    params = sum(p.numel() for p in model.parameters())
    return name, params


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))]


def start_server(root: Path, model_dir: Path, port: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        HF_MLCLS_MODELS=str(model_dir),
        HF_MLCLS_SPACE_TMP=str(root / "space_tmp"),
        HF_HOME=str(root / "hf_home"),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    (root / "space_tmp").mkdir()
    log = open(root / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(APP)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while True:
        if proc.poll() is not None:
            sys.exit(f"the app exited with {proc.returncode}:\n{(root / 'app.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            sys.exit("the app did not answer within 300 s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mldecoder-tresnetm-224", help="a preset name, or 'tiny'")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="in all, split evenly over the clients")
    parser.add_argument("--marks", default="50,200", help="request counts at which the server's RSS is read")
    parser.add_argument("--reference", type=int, default=16, help="sequential requests of the one-client reference")
    parser.add_argument("--results", default="space_load",
                        help="name of the results fragment: bench/results/NAME.md, for python bench/write_docs.py")
    args = parser.parse_args()
    marks = sorted({int(m) for m in args.marks.split(",")} | {args.requests})
    if args.requests % args.clients:
        parser.error("--requests must be a multiple of --clients")

    from gradio_client import Client, handle_file

    report = Fragment(args.results)
    with report.capture():
        ok = run(args, marks, Client, handle_file)
    if ok:
        report.write()
    else:
        sys.exit("bench_space_load: the run had errors (above); no results written")


def run(args, marks, Client, handle_file) -> bool:
    """One load run, reported through print; whether every request succeeded and the server survived."""
    root = Path(tempfile.mkdtemp(prefix="bench_space_load_"))
    try:
        name, params = save_model(args.model, root / "models")
        port = free_port()
        proc = start_server(root, root / "models" / name, port)
        url = f"http://127.0.0.1:{port}/"
        model_label = f"{name} (local)"
        print(f"model {name} ({params / 1e6:.1f} M parameters), {args.clients} clients x "
              f"{args.requests // args.clients} requests, queue concurrency 2 (spaces/app.py)\n")

        def client(i) -> Client:
            folder = root / "client" / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            return Client(url, verbose=False, download_files=str(folder), analytics_enabled=False)

        def classify(c, image) -> str:
            return c.predict([handle_file(str(image))], model_label, 0.5, 5, api_name="/classify")[0]

        # warm-up (loads the model) and the one-client reference
        solo = client("solo")
        for image in EXAMPLES:
            assert "Classified 1 image(s)" in classify(solo, image), "warm-up failed"
        reference = []
        for j in range(args.reference):
            start = time.perf_counter()
            status = classify(solo, EXAMPLES[j % len(EXAMPLES)])
            reference.append(time.perf_counter() - start)
            assert "Classified 1 image(s)" in status, status
        warm = rss_mb(proc.pid)

        clients = [client(i) for i in range(args.clients)]
        lock = threading.Lock()
        done, errors, latencies, at_mark = [0], [], [], {}

        def work(k: int, c: Client) -> None:
            for j in range(args.requests // args.clients):
                image = EXAMPLES[(k + j) % len(EXAMPLES)]
                start = time.perf_counter()
                try:
                    status = classify(c, image)
                    ok = f"Classified 1 image(s) with {model_label}" in status
                except Exception as err:  # noqa: BLE001 - counted and shown
                    ok, status = False, f"{type(err).__name__}: {err}"
                elapsed = time.perf_counter() - start
                with lock:
                    done[0] += 1
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(f"client {k} request {j}: {status[:200]}")
                    if done[0] in marks:
                        at_mark[done[0]] = rss_mb(proc.pid)

        threads = [threading.Thread(target=work, args=(k, c)) for k, c in enumerate(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        alive = proc.poll() is None

        p50_ref = statistics.median(reference)
        table = Table(["clients", "requests", "errors", "req/s", "p50 s", "p95 s", "max s", "1-client p50 s",
                       "p50 vs 1 client"])
        p50 = statistics.median(latencies) if latencies else float("nan")
        table.add(args.clients, args.requests, len(errors), args.requests / wall, p50,
                  percentile(latencies, 95) if latencies else float("nan"), max(latencies, default=float("nan")),
                  p50_ref, p50 / p50_ref)
        print()
        memory = Table(["server after", "RSS MB", "peak RSS MB", "RSS vs warm-up MB"])
        memory.add("warm-up (model loaded)", warm[0], warm[1], 0.0)
        for mark in marks:
            rss, hwm = at_mark.get(mark, (float("nan"), float("nan")))
            memory.add(f"{mark} requests", rss, hwm, rss - warm[0])
        print(f"\nserver still running: {alive}; wall time {wall:.1f} s; load average {os.getloadavg()[0]:.1f} at the end")
        for line in errors[:10]:
            print("error:", line)
        log = (root / "app.log").read_text()
        if "Traceback" in log:
            print("the server logged a traceback:\n" + log[log.index("Traceback"):][:3000])
        return alive and not errors and "Traceback" not in log
    finally:
        if "proc" in locals() and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
