"""Former home of the sampler, kept so scripts written against 0.1 still import (the official-bench harness
does `from magicanimate_cli.sampler import SamplerConfig`). The sampler lives in `engine.sampler`."""

from .engine.sampler import SamplerConfig  # noqa: F401
