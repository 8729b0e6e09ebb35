"""The motion: MagicAnimate's DensePose render format and the geometry of fitting it to a reference.

palette.py   the render format (VIRIDIS parts on viridis(0)) and recognising a render
fit.py       fitting frames to the working size (pad / crop / stretch) and back
align.py     --align: a similarity that moves the motion's body onto the reference person
people.py    a render's people: regions, identities across frames, pairing

All small pure functions on arrays; the DensePose model that draws renders is the package `densepose/`, above media."""
