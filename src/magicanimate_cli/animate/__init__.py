"""The animation job: one reference and one motion in, a video and its sidecar out.

settings.py         what a run is asked for, as plain data, checked
job.py              files → prepared inputs → engine → streamed video + sidecar
batch.py            work lists for folders and CSVs, and shards of them
preflight.py        checks on the motion before the long part (is it a render? --align, --preview)
preview.py          the before/after picture of --align
rendered_motion.py  --motion-from-video: a temporary render of an ordinary video, read as the motion

fuse-long, serve and training's validation build on this job, so it stands one layer below the features."""
