"""`magicanimate ARGS` as process RANK of WORLD, joined through a file store (no port): how the training tests
start several CPU processes. torchrun and `accelerate launch` set the same variables and join over TCP instead.

    python tests/train_ranks.py RANK WORLD FILE_STORE_URI train DATA -o RUN ...
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    rank, world, store = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    from magicanimate_cli.cli import main as cli

    code = 0
    try:
        cli(sys.argv[4:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        dist.destroy_process_group()
    # the run is over and its files are closed; skip the interpreter's teardown of torch (seconds per process)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
