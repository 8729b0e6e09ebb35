"""`magicanimate serve --devices A,B`: one job at a time on each device, two devices run two jobs at once; the
server's workspace is gone when it stops. (CPU named twice stands in for two GPUs.)"""

from __future__ import annotations

import pytest

pytest.importorskip("gradio", reason="serve needs the [serve] extra (Gradio)")

from gradio_client import Client, handle_file  # noqa: E402

from serve_helpers import WAIT, Gate, free_port, small_inputs  # noqa: E402

SETTINGS = [False, False, 128, "pad", False, 4, 2, 7.5, 1, "ddim"]


def test_two_devices_run_two_jobs_at_once_and_the_workspace_is_removed_at_exit(tmp_path):
    from magicanimate_cli.serve.handlers import CANCELLED
    from magicanimate_cli.serve.server import serving
    from magicanimate_cli.serve.settings import ServeSettings

    reference, motion = small_inputs(tmp_path)
    gate = Gate()
    gate.hold("job:start")
    settings = ServeSettings(port=free_port(), demo=True, devices=("cpu", "cpu"), sweep_every=86400)
    with serving(settings, hooks=gate) as server:
        sessions = [Client(server.url, verbose=False, download_files=str(tmp_path)) for _ in range(2)]
        jobs = [s.submit(handle_file(str(reference)), handle_file(str(motion)), *SETTINGS, api_name="/animate")
                for s in sessions]
        gate.wait_for_arrivals("job:start", 2)  # both started while neither was let go: they run side by side
        for session in sessions:  # each stops at its first phase, before any denoising
            assert session.predict(api_name="/cancel") == "Cancelling: the job stops at its next window."
        gate.open("job:start")
        assert [job.result(timeout=WAIT) for job in jobs] == [(None, None, CANCELLED)] * 2
        assert gate.arrived["window"] == 0 and list(server.workspace.jobs.iterdir()) == []
        root = server.workspace.root
        assert root.is_dir()
    assert not root.exists()
