"""The motion: MagicAnimate's DensePose render format and the geometry of fitting it to a reference.

palette.py   the render format (VIRIDIS parts on viridis(0)) and recognising a render
fit.py       fitting frames to the working size (pad / crop / stretch) and back
align.py     --align: a similarity that moves the motion's body onto the reference person
densepose/   the DensePose model that draws renders from photos and videos (stands above media: it reads videos)

Everything outside densepose/ is small pure functions on arrays."""
