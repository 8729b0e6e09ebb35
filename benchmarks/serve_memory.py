"""Does `magicanimate serve` hold on to memory job after job? Resident memory after N sequential --demo jobs.

    python benchmarks/serve_memory.py               # 20 jobs, 4 frames at 128², 2 steps, CPU
    python benchmarks/serve_memory.py --jobs 50 --frames 8

Starts `magicanimate serve --demo --devices cpu` as a user would, sends the jobs one after another through
Gradio's Python client (each a new session, as different users would be), and reads the server's resident
memory (VmRSS, /proc, Linux) after each. The first job loads the models; every later job should leave the
server where the first left it: the acceptance bar is within 10% of the size after the first job.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc: Linux only")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from magicanimate_cli.demo.inputs import write_demo_inputs

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "magicanimate_cli", "serve", "--demo", "--devices", "cpu",
                               "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        if not line.startswith("serving "):
            raise SystemExit(f"the server did not start: {line}{server.stderr.read()}")
        with tempfile.TemporaryDirectory() as scratch:
            inputs = write_demo_inputs(scratch, size=128, frames=args.frames, seed=0)
            sizes = []
            for job in range(args.jobs):
                client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
                *_, status = client.predict(handle_file(str(inputs.reference)), handle_file(str(inputs.motion)),
                                            False, False, 128, "pad", False, args.frames, args.steps, 7.5, job,
                                            "ddim", api_name="/animate")
                if not status.startswith("Done"):  # the server reports a failure as the status
                    raise SystemExit(f"job {job + 1} failed: {status}")
                sizes.append(round(rss_mb(server.pid), 1))
                print(f"job {job + 1:3d}: {sizes[-1]:8.1f} MB resident", flush=True)
    finally:
        server.terminate()
        server.wait()
    growth = sizes[-1] / sizes[0] - 1
    print(json.dumps({"jobs": args.jobs, "rss_after_first_mb": sizes[0], "rss_after_last_mb": sizes[-1],
                      "rss_max_mb": max(sizes), "growth_after_first": round(growth, 4),
                      "within_10_percent": abs(growth) <= 0.10}))


if __name__ == "__main__":
    main()
