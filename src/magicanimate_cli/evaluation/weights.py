"""Where the metric feature networks' weight files live, where they come from, and how to find them.

The download helper (`magicanimate download-weights --metrics`) reads `METRIC_WEIGHT_FILES`; the
evaluator only ever reads local files, so nothing is fetched while metrics run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..runtime.errors import WeightsError

METRICS_SUBDIR = "metrics"
"""Metric weights sit in `<weights_dir>/metrics/`, apart from the animation model's files."""

DOWNLOAD_COMMAND = "magicanimate download-weights --metrics"


@dataclass(frozen=True)
class MetricWeightFile:
    """One released weight file a feature network loads, exactly as its authors published it."""

    key: str
    filename: str
    url: str
    size: int | None
    sha256: str | None
    network: str
    metrics: tuple[str, ...]

    @property
    def relative_path(self) -> Path:
        """Path below the weights directory, e.g. `metrics/vgg16-397923af.pth`."""
        return Path(METRICS_SUBDIR) / self.filename

    def path(self, weights_dir: Path) -> Path:
        """Absolute location of this file under `weights_dir`."""
        return Path(weights_dir) / self.relative_path


VGG16 = MetricWeightFile(
    key="vgg16",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    size=553433881,
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    network="VGG16 ImageNet backbone (torchvision layout; LPIPS uses its conv layers)",
    metrics=("lpips",),
)
LPIPS_VGG_HEADS = MetricWeightFile(
    key="lpips_vgg",
    filename="lpips_vgg_v0.1.pth",
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    size=7289,
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    network="LPIPS v0.1 linear heads for VGG (keys lin0.model.1.weight ... lin4.model.1.weight)",
    metrics=("lpips",),
)
FID_INCEPTION = MetricWeightFile(
    key="fid_inception",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    size=None,
    sha256=None,
    network="InceptionV3 of standard FID (TensorFlow 2015-12-05 graph ported by pytorch-fid)",
    metrics=("fid",),
)
R3D50_KINETICS = MetricWeightFile(
    key="r3d50_kinetics",
    filename="resnet-50-kinetics.pth",
    url="https://github.com/yjh0410/YOWOF/releases/download/yowof-weight/resnet-50-kinetics.pth",
    size=None,
    sha256=None,
    network="3D ResNet-50 trained on Kinetics-400 (Hara et al., 3D-ResNets-PyTorch; mirror of their release)",
    metrics=("fid-vid",),
)
I3D_KINETICS = MetricWeightFile(
    key="i3d_kinetics",
    filename="i3d_pretrained_400.pt",
    url=(
        "https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
        "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt"
    ),
    size=None,
    sha256=None,
    network="Inception-I3D trained on Kinetics-400 (PyTorch port used by VideoGPT/TATS/DisCo)",
    metrics=("fvd",),
)

METRIC_WEIGHT_FILES: tuple[MetricWeightFile, ...] = (
    VGG16,
    LPIPS_VGG_HEADS,
    FID_INCEPTION,
    R3D50_KINETICS,
    I3D_KINETICS,
)


def files_for_metric(metric: str) -> tuple[MetricWeightFile, ...]:
    """The weight files a metric needs; pixel metrics need none."""
    return tuple(spec for spec in METRIC_WEIGHT_FILES if metric in spec.metrics)


def default_weights_dir() -> Path:
    """`$MAGICANIMATE_HOME` if set, else `~/.cache/magicanimate`: the same root the animate weights use."""
    home = os.environ.get("MAGICANIMATE_HOME")
    if home:
        return Path(home).expanduser()
    return Path.home() / ".cache" / "magicanimate"


def missing_metric_weights(path: Path) -> WeightsError:
    """The one-line error for a metric weight file that is not on disk."""
    return WeightsError(f"{path}: file not found; run `{DOWNLOAD_COMMAND}` to fetch the metric weights")


def require_file(spec: MetricWeightFile, weights_dir: Path) -> Path:
    """The local path of `spec`, or the error naming it and the command that fetches it."""
    path = spec.path(weights_dir)
    if not path.is_file():
        raise missing_metric_weights(path)
    return path
