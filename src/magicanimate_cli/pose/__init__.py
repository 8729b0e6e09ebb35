"""`magicanimate pose`: an ordinary video in, its DensePose render in MagicAnimate's format out, with a sidecar.

job.py   a video in, the render out (streamed, atomic, with a sidecar and progress)

The model, the renderer and the tracker it drives live in densepose/, shared with animate and prepare-data.
"""
