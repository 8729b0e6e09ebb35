"""`python -m magicanimate_cli.demo DIR`: the embedded default — tiny weights and synthetic inputs in DIR.

Writes DIR/weights (a tiny random model in the official layout), DIR/reference.png and DIR/motion.mp4, so
`magicanimate animate` can run with nothing downloaded (`make demo` does exactly that).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.loader import check_weights
from .inputs import write_demo_inputs
from .tiny_weights import build_tiny_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m magicanimate_cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", type=int, default=128, help="side of the square demo inputs (default 128)")
    parser.add_argument("--frames", type=int, default=24, help="motion frames (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    weights = args.directory / "weights"
    if check_weights(weights):
        build_tiny_weights(weights, seed=args.seed)
    inputs = write_demo_inputs(args.directory, size=args.size, frames=args.frames, seed=args.seed)
    print(f"tiny weights: {weights}\nreference:    {inputs.reference}\nmotion:       {inputs.motion}")


if __name__ == "__main__":
    main()
