"""`magicanimate serve`: the web page, on the devices given, until Ctrl-C (needs the `[serve]` extra)."""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path
from typing import Optional

import typer

from ..runtime.errors import SettingsError
from .common import ANIMATION_WEIGHTS_OPTION, WEIGHTS_DEFAULT, Dtype, flag

HELP = ("Serve the web page: upload a photo and a motion, preview, animate (Gradio; jobs queue, one per device). "
        "Binds 127.0.0.1 unless --host says otherwise (docs/serve.md).")


def serve(
    weights: Optional[Path] = typer.Option(None, show_default=WEIGHTS_DEFAULT,
                                           help="Weights folder in the official layout (see download-weights)."),
    animation_weights: Optional[Path] = ANIMATION_WEIGHTS_OPTION,
    host: str = typer.Option("127.0.0.1", metavar="<address>",
                             help="Address to listen on; 0.0.0.0 exposes the page to the network "
                                  "(docs/serve.md says what that means)."),
    port: int = typer.Option(7860, help="Port to listen on."),
    demo: bool = flag("--demo", "Serve the tiny embedded model with the synthetic demo inputs as examples (no "
                                "weights needed; its output is not a picture of anything)."),
    devices: str = typer.Option("auto", "--devices", metavar="<device,...>",
                                help="Devices, comma-separated (cuda:0,cuda:1): each runs one job at a time."),
    dtype: Dtype = typer.Option("auto", help="Model precision (auto: fp16 on CUDA, fp32 elsewhere)."),
    keep_results: str = typer.Option("1h", "--keep-results", metavar="<duration>",
                                     help="How long a finished job's files stay downloadable (90s, 30m, 1h, 2d)."),
    max_upload_mb: int = typer.Option(200, "--max-upload-mb", help="Largest upload accepted, in MB (of 1024² bytes)."),
    max_frames: int = typer.Option(300, "--max-frames", help="Most motion frames one job animates."),
    max_job_seconds: Optional[float] = typer.Option(None, "--max-job-seconds", metavar="<seconds>",
                                                    help="Refuse jobs estimated to take longer on this server "
                                                         "(estimates start after the first job)."),
) -> None:
    """Serve the web page until Ctrl-C; everything it wrote is removed at exit."""
    from ..runtime.home import default_weights_dir
    from ..serve.settings import ServeSettings, parse_devices, parse_duration

    if importlib.util.find_spec("gradio") is None:
        raise SettingsError("serve needs Gradio, the [serve] extra: pip install 'magicanimate-cli[serve]'")
    from ..serve.server import serving

    settings = ServeSettings(weights=weights.expanduser() if weights else default_weights_dir(),
                             animation_weights=animation_weights.expanduser() if animation_weights else None,
                             host=host, port=port, demo=demo, devices=parse_devices(devices), dtype=dtype,
                             keep_results=parse_duration(keep_results), max_upload_mb=max_upload_mb,
                             max_frames=max_frames, max_job_seconds=max_job_seconds)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop cleans up like Ctrl-C
    with serving(settings) as server:
        typer.echo(f"serving {server.url} (workspace {server.workspace.root}); Ctrl-C stops and removes it",
                   err=True)
        server.wait()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve)
