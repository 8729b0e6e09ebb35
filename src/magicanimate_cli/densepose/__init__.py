"""The DensePose model and what it draws: the model's contract, people rendered in MagicAnimate's format, tracking
for --smooth, and a whole video rendered frame by frame.

model.py      where the TorchScript DensePose model lives, loading it, and its input/output contract
settings.py   the options of a render, as plain data
loading.py    checked settings from the command line's words, and the model loaded from them
render.py     detections → per-person part labels → one viridis frame
reference.py  the person of a reference photo (for --align)
track.py      --smooth: people followed across frames, boxes fitted and logits combined, short misses filled
video.py      a video's render, frame by frame, into writers (pose, --motion-from-video, prepare-data)
ops.py        torchvision's detection ops in pure torch, for machines without a matching torchvision
"""
