"""torchvision's detection ops (`torchvision::nms`, `torchvision::roi_align`) for the TorchScript DensePose model.

The exported DensePose R-50-FPN-DL detector is a scripted detectron2 `GeneralizedRCNN`: its RPN and box head call
`torch.ops.torchvision.nms` (through torchvision's `batched_nms`) and its two ROI poolers call
`torch.ops.torchvision.roi_align` (detectron2 "ROIAlign": aligned=False, sampling_ratio=2, 7x7 for boxes and 28x28
for DensePose, spatial scales 1/4..1/32). `torch.jit.load` refuses the file unless both ops are registered, and no
torchvision wheel loads beside every torch build (a CUDA torchvision beside a CPU torch raises on import). So where
torchvision cannot provide them we register pure-torch versions under the same names and schemas. They follow
torchvision's CPU kernels rule for rule and in the same float32 arithmetic: nms keeps the very same boxes in the
same order, roi_align agrees to a few float32 ulps (only the rounding of its running sums differs), so the
detector finds the same people with or without torchvision. They are registered as CompositeImplicitAutograd, so
they run on any device and differentiate through ordinary torch ops.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

NAMESPACE = "torchvision"

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align": (
        "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
        "int sampling_ratio, bool aligned) -> Tensor"
    ),
}
"""torchvision's own schemas (0.29), so a model scripted against torchvision binds to ours unchanged."""

_OWN_KEY = "CompositeImplicitAutograd"
"""Where our kernels live; torchvision registers per backend (CPU, CUDA), so this key tells ours from theirs."""


def ensure_detection_ops() -> str:
    """Make `torch.ops.torchvision.nms` and `.roi_align` callable; say whose kernels now serve them.

    torchvision is imported first, since importing it is what registers its compiled kernels; any failure of that
    import (absent, or built for another torch) is expected and only means we fill in. Each op is then defined
    and implemented only where nothing can run it yet, so a second call, or a call after torchvision succeeded,
    registers nothing. Returns "torchvision" when torchvision's kernels serve every op, else "builtin".
    """
    _try_import_torchvision()
    for name, schema in _SCHEMAS.items():
        qualname = f"{NAMESPACE}::{name}"
        if not _op_defined(name):
            torch.library.define(qualname, schema)
        if not torch._C._dispatch_has_computed_kernel_for_dispatch_key(qualname, "CPU"):
            torch.library.impl(qualname, _OWN_KEY, _KERNELS[name])
    if any(torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{n}", _OWN_KEY) for n in _SCHEMAS):
        return "builtin"
    return "torchvision"


def _try_import_torchvision() -> None:
    """Import torchvision for its side effect of registering its ops; a broken install is not our error."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # a mismatched build raises RuntimeError/OSError, not only ImportError
        pass


def _op_defined(name: str) -> bool:
    """Whether the dispatcher knows torchvision::NAME (by torchvision, a half-finished import, or us)."""
    return hasattr(getattr(torch.ops, NAMESPACE), name)


def nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression with torchvision's exact rules, without a loop over boxes.

    torchvision visits boxes by score (descending, ties in input order), keeps one unless an already kept box
    overlaps it with IoU > iou_threshold, IoU = inter / (area_i + area_j - inter) with area (x2-x1)*(y2-y1).
    The greedy result is the unique solution of "kept[j] = no kept i before j suppresses j", so we settle it
    from the front a round at a time over the whole suppression matrix: each round decides at least the first
    undecided box, and in practice a handful of rounds decide all of them. Returns the kept indices into
    `dets`, highest score first, as int64.
    """
    _check_nms_args(dets, scores)
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=dets.device)
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices
    suppresses = _suppression_matrix(dets[order], iou_threshold)
    kept = _settle_greedy(suppresses)
    return order[kept]


def _check_nms_args(dets: torch.Tensor, scores: torch.Tensor) -> None:
    """torchvision's shape checks: a misshapen call fails loudly instead of broadcasting into nonsense."""
    if dets.dim() != 2 or dets.size(1) != 4:
        raise ValueError(f"boxes should be a (N, 4) tensor, got shape {tuple(dets.shape)}")
    if scores.dim() != 1 or scores.size(0) != dets.size(0):
        raise ValueError(f"scores should be a ({dets.size(0)},) tensor, got shape {tuple(scores.shape)}")


def _suppression_matrix(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """(n, n) bool: box i (score order) would suppress the later box j, were i kept.

    The IoU is computed in the boxes' dtype in torchvision's order of operations; the threshold comparison is
    the C++ one (float IoU promoted to double) done in the boxes' dtype against the threshold rounded down.
    """
    x1, y1, x2, y2 = boxes.t().contiguous().unbind(0)
    areas = (x2 - x1) * (y2 - y1)
    # In place where possible: at n = 4000 every (n, n) temporary is 64 MB, and allocating them dominated.
    w = torch.minimum(x2[:, None], x2[None, :]).sub_(torch.maximum(x1[:, None], x1[None, :])).clamp_min_(0)
    h = torch.minimum(y2[:, None], y2[None, :]).sub_(torch.maximum(y1[:, None], y1[None, :])).clamp_min_(0)
    inter = w.mul_(h)
    union = (areas[:, None] + areas[None, :]).sub_(inter)
    iou = inter.div_(union)
    return (iou > _threshold_below(iou_threshold, boxes.dtype)).triu_(diagonal=1)


def _threshold_below(threshold: float, dtype: torch.dtype) -> float:
    """The largest `dtype` value t' <= threshold: for x of that dtype, x > threshold exactly when x > t'.

    Comparing a float32 IoU with the float threshold rounded to nearest would differ from torchvision whenever the
    threshold rounds up (0.3 -> 0.30000001): an IoU of exactly float32(0.3) is above 0.3 in double arithmetic.
    """
    exact = torch.tensor(threshold, dtype=torch.float64)
    rounded = exact.to(dtype)
    if rounded.double() > exact:
        rounded = torch.nextafter(rounded, torch.tensor(-math.inf, dtype=dtype))
    return rounded.item()


def _settle_greedy(suppresses: torch.Tensor) -> torch.Tensor:
    """Bool mask of the boxes greedy NMS keeps, given the strictly upper-triangular suppression matrix.

    A box is surely kept once every earlier box that overlaps it is surely dropped, and surely dropped once an
    earlier box that overlaps it is surely kept. The first undecided box always meets one of the two, so each
    round decides at least one box and the loop ends; the answer is exactly the sequential greedy one.
    """
    n = suppresses.shape[0]
    # 0/1 counts as float: a matrix-vector product asks "any earlier box of this set overlaps j" for all j at
    # once, far faster than a boolean (n, n) reduction; sums stay exact integers below 2**24 boxes.
    overlaps = suppresses.to(torch.float32)
    kept = torch.zeros(n, dtype=torch.bool, device=suppresses.device)
    dropped = torch.zeros_like(kept)
    undecided = torch.ones_like(kept)
    while bool(undecided.any()):
        hit_by_kept = (kept.to(overlaps.dtype) @ overlaps) > 0
        threatened = ((~dropped).to(overlaps.dtype) @ overlaps) > 0
        dropped |= undecided & hit_by_kept
        kept |= undecided & ~hit_by_kept & ~threatened
        undecided = ~(kept | dropped)
    return kept


def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """Average of bilinear samples over each bin of each ROI: torchvision's CPU RoIAlign, vectorised.

    rois is (K, 5): batch index, then x1 y1 x2 y2 in image coordinates, scaled by spatial_scale onto `input`
    (N, C, H, W). Each bin averages a grid of sampling_ratio x sampling_ratio points, or ceil(bin size) points
    per axis when sampling_ratio <= 0, so ROIs are processed in one batch per distinct grid. Returns
    (K, C, pooled_height, pooled_width).
    """
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(f"rois should be a (K, 5) tensor, got shape {tuple(rois.shape)}")
    if input.dtype != rois.dtype:
        raise ValueError(f"input ({input.dtype}) and rois ({rois.dtype}) should have the same dtype")
    out = input.new_zeros(rois.shape[0], input.shape[1], pooled_height, pooled_width)
    if out.numel() == 0:
        return out
    geometry = _RoiGeometry.of(rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    # One contiguous row of channels per pixel: the gather reads whole rows (a strided view is ~20x slower).
    features = input.permute(0, 2, 3, 1).contiguous().view(-1, input.shape[1])
    grids, group_of_roi = torch.unique(geometry.grid, dim=0, return_inverse=True)
    for group, (grid_h, grid_w) in enumerate(grids.tolist()):
        if grid_h <= 0 or grid_w <= 0:
            continue  # an empty sampling grid pools to zeros, as torchvision's loops never run
        members = torch.nonzero(group_of_roi == group).squeeze(1)
        pooled = _pool_group(features, input.shape, geometry.select(members), grid_h, grid_w)
        out[members] = pooled.to(out.dtype)
    return out


class _RoiGeometry:
    """Per-ROI quantities in the feature map's frame, computed in the input dtype as torchvision's kernel does."""

    def __init__(self, batch, start, bin_size, grid, pooled):
        self.batch = batch  # (K,) int64 image index
        self.start = start  # (K, 2) y, x of the ROI's top-left corner
        self.bin_size = bin_size  # (K, 2) bin height, width
        self.grid = grid  # (K, 2) samples per bin along y, x
        self.pooled = pooled  # (ph, pw)

    @classmethod
    def of(cls, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned) -> _RoiGeometry:
        """Scale, shift and size the ROIs; why each step is done the way it is, is torchvision's contract."""
        dtype, device = rois.dtype, rois.device
        scale = torch.tensor(spatial_scale, dtype=dtype, device=device)  # the kernel narrows the scale to T
        offset = 0.5 if aligned else 0.0  # aligned: pixel centres sit at half-integers
        yx1 = rois[:, [2, 1]] * scale - offset
        yx2 = rois[:, [4, 3]] * scale - offset
        size = yx2 - yx1
        if not aligned:
            size = size.clamp_min(1.0)  # legacy: malformed ROIs are forced to at least 1x1
        pooled = torch.tensor([pooled_height, pooled_width], dtype=dtype, device=device)
        bin_size = size / pooled
        if sampling_ratio > 0:
            grid = torch.full_like(bin_size, sampling_ratio, dtype=torch.long)
        else:
            grid = _ceil_to_int(bin_size)  # adaptive: about one sample per feature pixel
        batch = rois[:, 0].to(torch.long)  # C++ int conversion truncates, as does this one
        return cls(batch, yx1, bin_size, grid, (pooled_height, pooled_width))

    def select(self, members: torch.Tensor) -> _RoiGeometry:
        """The ROIs at `members`."""
        return _RoiGeometry(
            self.batch[members], self.start[members], self.bin_size[members], self.grid[members], self.pooled
        )


def _ceil_to_int(values: torch.Tensor) -> torch.Tensor:
    """ceil() then int conversion; NaN (a NaN ROI) becomes 0, an empty grid, rather than garbage."""
    return torch.nan_to_num(values.ceil(), nan=0.0).clamp(-(2**31), 2**31 - 1).to(torch.long)


def _pool_group(features, shape, geometry: _RoiGeometry, grid_h: int, grid_w: int) -> torch.Tensor:
    """Pool ROIs sharing one sampling grid: (R, C, ph, pw).

    Every output cell is a weighted sum of feature rows (4 bilinear taps per grid point), which is exactly what
    `embedding_bag` computes, fused and without (cells x taps x channels) temporaries: it runs about as fast as
    torchvision's kernel where a gather-multiply-add per tap is several times slower. Taps are listed in the
    kernel's order (grid row, grid column, then the four corners), so only the rounding of the running sum can
    differ from torchvision's (vectorised multiply-adds against its separate products and sums): a few ulps.
    """
    _, channels, height, width = shape
    ph, pw = geometry.pooled
    rows = _axis_taps(geometry, 0, ph, grid_h, height)  # fields (R, ph, grid_h, 2)
    cols = _axis_taps(geometry, 1, pw, grid_w, width)  # fields (R, pw, grid_w, 2)
    inside = rows.valid[:, :, None, :, None, None, None] & cols.valid[:, None, :, None, :, None, None]
    offset = rows.index[:, :, None, :, None, :, None] * width + cols.index[:, None, :, None, :, None, :]
    weight = rows.weight[:, :, None, :, None, :, None] * cols.weight[:, None, :, None, :, None, :]
    base = (geometry.batch * (height * width))[:, None, None, None, None, None, None]
    pixel = base + torch.where(inside, offset, 0)  # outside: weight 0 on the image's first pixel, as the kernel
    weight = torch.where(inside, weight, 0.0)
    taps = grid_h * grid_w * 4
    summed = torch.nn.functional.embedding_bag(
        pixel.reshape(-1, taps), features, per_sample_weights=weight.reshape(-1, taps), mode="sum"
    )
    count = torch.tensor(max(grid_h * grid_w, 1), dtype=summed.dtype, device=summed.device)
    return (summed / count).view(-1, ph, pw, channels).permute(0, 3, 1, 2)


class _Taps(NamedTuple):
    """Bilinear neighbours along one axis of every grid point of every bin: (R, bins, grid) + (2,) for low/high."""

    valid: torch.Tensor  # (R, bins, grid): the point lies in [-1, size]; outside it contributes nothing
    index: torch.Tensor  # (R, bins, grid, 2): the pixel below and above the point
    weight: torch.Tensor  # (R, bins, grid, 2): 1 - distance to each of them


def _axis_taps(geometry: _RoiGeometry, axis: int, bins: int, grid: int, size: int) -> _Taps:
    """Grid point coordinates start + bin * bin_size + (step + 0.5) * bin_size / grid along `axis`, and taps.

    The float32 operations are the kernel's, in its order. Coordinates in [-1, 0] snap to 0 and those on or past
    the last pixel snap onto it (both taps there), the kernel's boundary rules.
    """
    start = geometry.start[:, axis, None, None]
    bin_size = geometry.bin_size[:, axis, None, None]
    dtype, device = start.dtype, start.device
    bin_index = torch.arange(bins, device=device).to(dtype)[None, :, None]
    step = torch.arange(grid, device=device).to(dtype)[None, None, :]
    within = (bin_size * (step + 0.5)) / torch.full_like(bin_size, grid)
    coord = (start + bin_index * bin_size) + within
    valid = (coord >= -1.0) & (coord <= size)
    coord = torch.where(valid, coord, 0.0).clamp_min(0.0)
    low = coord.to(torch.long)
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(dtype), coord)
    frac = coord - low.to(dtype)
    return _Taps(valid, torch.stack([low, high], -1), torch.stack([1.0 - frac, frac], -1))


_KERNELS = {"nms": nms, "roi_align": roi_align}
