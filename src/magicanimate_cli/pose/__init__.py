"""`magicanimate pose`: DensePose renders in MagicAnimate's own format from an ordinary video.

model.py     where the TorchScript DensePose model lives, loading it, and its input/output contract
render.py    detections → per-person part labels → one viridis frame
settings.py  the options of a pose run, as plain data
loading.py   checked settings from the command line's words, and the model loaded from them
job.py       a video in, the render out (streamed, atomic, with a sidecar and progress)
track.py     `--smooth`: people followed across frames, boxes fitted and logits combined, short misses filled
motion.py    `--motion-from-video`: a temporary render that `animate`/`fuse-long` read as their motion
ops.py       torchvision's detection ops in pure torch, for machines without a matching torchvision
"""
