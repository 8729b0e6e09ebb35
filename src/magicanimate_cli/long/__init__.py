"""Long videos for `fuse-long`: window layouts and their cost, control frames kept on disk, checkpoints, and
several processes sharing each denoising step.

Everything here builds on the engine as it is: `sampler.denoise` already takes a subset of windows, a reducer
that sums partial predictions across processes, and a start step; nothing here changes how a window is denoised.
"""
