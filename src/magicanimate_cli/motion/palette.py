"""The DensePose render format MagicAnimate's ControlNet was trained on.

MagicAnimate's motion clips (e.g. the official demo's `running.mp4`) show the fine body-part index I (0..24) of
each pixel, scaled to a byte as int(I * 255 / 24) and coloured through OpenCV's VIRIDIS map. Part 0 is the
background, so the background is viridis(0) = RGB (68, 1, 84) — never black.
"""

from __future__ import annotations

import numpy as np

PARTS = 24
"""Fine DensePose body parts; label 0 is the background."""

# OpenCV's COLORMAP_VIRIDIS as RGB bytes, entry i at characters 6i..6i+5 (what cv2.applyColorMap returns for the
# grey level i, channels reversed from BGR); tests/test_densepose_format.py checks it against OpenCV itself.
_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
)

VIRIDIS: np.ndarray = np.frombuffer(bytes.fromhex(_VIRIDIS_HEX), dtype=np.uint8).reshape(256, 3)
"""(256, 3) uint8 RGB lookup table."""


def part_levels(labels: np.ndarray) -> np.ndarray:
    """Grey level of each part label: I * 255 / 24 truncated to an integer, as DensePose's visualiser does."""
    return (np.asarray(labels, dtype=np.int64) * 255 // PARTS).astype(np.uint8)


PART_COLOURS: np.ndarray = VIRIDIS[part_levels(np.arange(PARTS + 1))]
"""(25, 3) uint8 RGB colour of each label; row 0 is the background."""

BACKGROUND: tuple[int, int, int] = tuple(int(c) for c in PART_COLOURS[0])
"""RGB (68, 1, 84): the colour of every pixel where no body is."""


def colourise(labels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB render of an integer part-label map with values 0..24."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > PARTS):
        raise ValueError(f"part labels must lie in 0..{PARTS}, got {labels.min()}..{labels.max()}")
    return PART_COLOURS[labels.astype(np.intp)]


# ------------------------------------------------------------------------------------------ recognising renders

CODING_NOISE = 12
"""Levels (per channel) by which lossy video coding may move a flat colour: H.264 reads (68, 1, 84) back as
(65, 0, 81); chroma subsampling at part edges moves more, which the share thresholds below absorb."""

_BIN = 8  # colours are grouped in 8-level bins per channel to find the border's mode despite that noise
_DOMINANT_SHARE = 0.5  # of the border ring that must lie within CODING_NOISE of its mode colour
_PALETTE_SHARE = 0.5  # of the pixels that must lie within CODING_NOISE of a part colour for a render
_DARK_LUMA = 64.0  # Rec. 601 luma at or below which a background counts as dark (viridis(0): 30.5)
_SAMPLE_PIXELS = 65_536  # pixels enough to judge a frame; larger frames are subsampled evenly


def border_ring(frame: np.ndarray, width: int = 2) -> np.ndarray:
    """(n, 3) uint8: the pixels of the outer `width`-pixel ring of an (H, W, 3) frame."""
    frame = np.asarray(frame)
    h, w = frame.shape[:2]
    width = max(1, min(width, h // 2, w // 2))
    inner = np.zeros((h, w), dtype=bool)
    inner[width:h - width, width:w - width] = True
    return frame[~inner].reshape(-1, 3)


def border_colour(frame: np.ndarray) -> tuple[int, int, int] | None:
    """The colour of the frame's border ring, or None when no single colour dominates it.

    A render's background fills its border; after lossy coding it is no longer one exact value, so the ring's
    pixels are binned first, and the most common exact colour of the fullest bin is returned (e.g. (65, 0, 81)
    for an H.264 copy of viridis(0)) if at least half the ring lies within CODING_NOISE of it.
    """
    ring = border_ring(frame).astype(np.int16)
    bins, inverse, counts = np.unique(ring // _BIN, axis=0, return_inverse=True, return_counts=True)
    in_mode_bin = ring[inverse.reshape(-1) == int(np.argmax(counts))]
    colours, colour_counts = np.unique(in_mode_bin, axis=0, return_counts=True)
    mode = colours[int(np.argmax(colour_counts))]
    close = np.abs(ring - mode).max(axis=1) <= CODING_NOISE
    if close.mean() < _DOMINANT_SHARE:
        return None
    return (int(mode[0]), int(mode[1]), int(mode[2]))


def background_colour(frame: np.ndarray) -> tuple[tuple[int, int, int], bool]:
    """(colour, found): the frame's border colour, or viridis(0) (`BACKGROUND`) with found False."""
    colour = border_colour(frame)
    return (colour, True) if colour is not None else (BACKGROUND, False)


def palette_share(frame: np.ndarray) -> float:
    """Share of the pixels within CODING_NOISE (per channel) of one of the 25 colours (24 parts + background)."""
    pixels = np.asarray(frame).reshape(-1, 3)
    step = max(1, len(pixels) // _SAMPLE_PIXELS)
    sample = pixels[::step].astype(np.int16)
    nearest = np.full(len(sample), 255, dtype=np.int16)
    for colour in PART_COLOURS.astype(np.int16):
        nearest = np.minimum(nearest, np.abs(sample - colour).max(axis=1))
    return float((nearest <= CODING_NOISE).mean())


def looks_like_render(frame: np.ndarray) -> bool:
    """Whether an RGB frame looks like a DensePose render in MagicAnimate's format.

    A render has a border of one dark colour (its background) and consists mostly of the 25 palette colours.
    A photograph or an ordinary video fails both; a render in another colour map (IUV colours, or parts on
    black) fails the second, and the ControlNet would read its colours as the wrong body parts.
    """
    colour = border_colour(frame)
    if colour is None or 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > _DARK_LUMA:
        return False
    return palette_share(frame) >= _PALETTE_SHARE


# ------------------------------------------------------------------------------------------ back to part labels

def nearest_labels(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8 part labels of an RGB render: each pixel's nearest palette colour (largest channel
    difference; ties to the lower label), so an exact render gives its labels back exactly and a lossy copy (H.264
    moves flat colours by a few levels) is snapped back onto the palette that `colourise` draws. Training stores
    renders this way: one byte a pixel instead of three, and the colours the ControlNet reads are exact.

    The distinct colours are matched, not the pixels: a render holds a few thousand (0.05 s for 512x910 where a
    per-pixel search takes 0.6 s)."""
    pixels = np.asarray(frame)
    keys = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    colours, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    rgb = np.stack([(colours >> shift) & 255 for shift in (16, 8, 0)], axis=-1).astype(np.int16)
    palette = PART_COLOURS.astype(np.int16)
    labels = np.empty(len(colours), dtype=np.uint8)
    for start in range(0, len(colours), _MATCH_BLOCK):
        block = rgb[start:start + _MATCH_BLOCK]
        labels[start:start + len(block)] = np.abs(block[:, None, :] - palette[None]).max(axis=-1).argmin(axis=1)
    return labels[inverse.reshape(-1)].reshape(pixels.shape[:2])


_MATCH_BLOCK = 65_536  # distinct colours matched at a time (bounds the memory of a noisy frame's search)
