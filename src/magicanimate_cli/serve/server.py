"""Start and stop the server: workspace, --demo assets, Gradio's environment, the page, the sweeper.

`serving(settings)` is the whole life of one server: on entry it is listening on settings.host:port; on exit
(however it ends) the page is closed and the workspace, with every upload and result, is gone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..runtime.errors import WeightsError
from .runner import Hooks, Runner
from .settings import ServeSettings
from .workspace import Sweeper, Workspace

DEMO_SIZE = 128
DEMO_FRAMES = 8


@dataclass
class Server:
    """A running server: where it listens and what it holds."""

    url: str
    settings: ServeSettings
    workspace: Workspace
    runner: Runner
    page: object  # the gradio Blocks

    def wait(self) -> None:
        """Block until Ctrl-C (or SIGTERM, which the command turns into the same exit)."""
        threading.Event().wait()


@contextmanager
def gradio_environment(workspace: Workspace) -> Iterator[None]:
    """What Gradio reads from the environment: its upload/cache folder inside the workspace, no telemetry.

    Gradio takes these from os.environ only; they are set for the server's life and restored after.
    """
    wanted = {"GRADIO_TEMP_DIR": str(workspace.served), "GRADIO_ANALYTICS_ENABLED": "False",
              "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_RUN_HISTORY": "False"}
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def prepare_demo(workspace: Workspace) -> tuple[Path, tuple[Path, Path]]:
    """--demo: the tiny embedded model (as `make demo` builds it) and the synthetic inputs, in the workspace."""
    from ..demo.inputs import write_demo_inputs
    from ..demo.tiny_weights import build_tiny_weights

    build_tiny_weights(workspace.weights, seed=0)
    inputs = write_demo_inputs(workspace.examples, size=DEMO_SIZE, frames=DEMO_FRAMES, seed=0)
    return workspace.weights, (inputs.reference, inputs.motion)


def check_weights_folder(weights: Path, animation_weights: Path | None = None) -> None:
    """Refuse to start on a weights folder that would not load (the first problem, as one line)."""
    from ..engine.loader import check_weights

    problems = check_weights(weights, animation_weights)
    if problems:
        raise WeightsError(problems[0])


@contextmanager
def serving(settings: ServeSettings, hooks: Hooks | None = None,
            clock: Callable[[], float] = time.time) -> Iterator[Server]:
    """Run the server for the duration of the `with` block; everything it wrote is removed at the end.

    Leaving the block (Ctrl-C, SIGTERM) closes the page, cancels every job and waits until the running ones
    have stopped at their next window, and only then removes the workspace: no job thread is still computing
    when the process exits (which aborted it, exit 134, while one was)."""
    settings.validate()
    with ExitStack() as stack:
        workspace = Workspace.create()
        stack.callback(workspace.remove)
        examples = None
        if settings.demo:
            weights, examples = prepare_demo(workspace)
            settings = replace(settings, weights=weights)
        check_weights_folder(settings.weights, settings.animation_weights)
        stack.enter_context(gradio_environment(workspace))
        from .handlers import Handlers
        from .page import PAGE_CSS, build_page, theme

        runner = Runner(settings, workspace, hooks)
        page = build_page(settings, Handlers(runner), examples)
        page.launch(server_name=settings.host, server_port=settings.port, share=False, prevent_thread_lock=True,
                    quiet=True, show_error=True, max_file_size=f"{settings.max_upload_mb}mb", theme=theme(), css=PAGE_CSS,
                    ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False, run_history=False)
        stack.callback(page.close)
        stack.callback(runner.stop)  # first: cancel every job and wait for the running ones, so that their pages
        # hear the end and let go of their connections, which Gradio's server otherwise waits 5 s for
        stack.enter_context(_swept(workspace, settings, clock))
        yield Server(page.local_url, settings, workspace, runner, page)


@contextmanager
def _swept(workspace: Workspace, settings: ServeSettings, clock: Callable[[], float]) -> Iterator[None]:
    sweeper = Sweeper(workspace, settings.keep_results, settings.sweep_every, clock).start()
    try:
        yield
    finally:
        sweeper.stop()
