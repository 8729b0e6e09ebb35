"""The inference engine: models, the weights loader, the window planner, the sampler and the `Animator` API.

Everything above it (commands, jobs, media) reads files and settings and hands pixels to `Animator`; nothing
in here knows about the command line or about files other than weights.
"""
