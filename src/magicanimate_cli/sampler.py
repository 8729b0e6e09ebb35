"""Former home of the sampler, kept so scripts written against 0.1 still import (the official-bench harness
does `from magicanimate_cli.sampler import SamplerConfig`). The class lives in `engine.sampler_config`."""

from .engine.sampler_config import SamplerConfig  # noqa: F401
