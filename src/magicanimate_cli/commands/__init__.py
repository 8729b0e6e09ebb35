"""One module per subcommand; each exposes `register(app)`. Add new ones to COMMAND_MODULES."""

from __future__ import annotations

from . import animate, download, evaluate, fuse_long, pose, prepare_data, serve, train, train_report

COMMAND_MODULES: list = [download, pose, prepare_data, train, train_report, animate, evaluate, fuse_long, serve]
