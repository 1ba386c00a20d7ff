"""The VGGish network in PyTorch, built from Google's variable names (the same as embed/network.py).

Google's layouts are kept where they decide the arithmetic: convolutions are converted from
[kh, kw, in, out] to torch's [out, in, kh, kw] and dense layers from [in, out] to [out, in], but
the activations are flattened in TensorFlow's order (height, width, channels), so fc1_1's rows
stay Google's. In float32 the results equal the TF network's within float32 rounding (the order
of the sums differs); see tests/test_torch_equality.py.

Precision is an explicit choice: "float32" (the default, and the only one whose embeddings are
AudioSet-compatible), "tf32" (CUDA matrix units with 10-bit mantissas) or "bf16" (autocast).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Iterator

import numpy as np
import torch
from torch import nn

from embed.network import CONV_LAYERS, DENSE_LAYERS, check_shapes, expected_shapes
from embed.embedder import VGGISH_PRECISIONS as PRECISIONS
from embed.params import VGGISH



def to_torch_layout(weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Google's variables (by their names) -> float32 tensors in torch's layout, same names."""
    check_shapes({name: tuple(np.shape(weights[name])) for name in expected_shapes()}, "VGGish weights")
    converted = {}
    for name in expected_shapes():
        value = torch.from_numpy(np.array(weights[name], dtype=np.float32))
        if name.endswith("/weights"):
            value = value.permute(3, 2, 0, 1) if value.ndim == 4 else value.t()
        converted[name] = value.contiguous()
    return converted


class VGGishTorch(nn.Module):
    """[N, 96, 64] float32 log-mel examples -> [N, 128] raw embeddings."""

    def __init__(self, weights: Mapping[str, torch.Tensor]):
        """`weights`: Google's names in torch layout (to_torch_layout, or a converted file)."""
        super().__init__()
        with torch.device("meta"):  # no random initialisation of 72M weights that are replaced at once
            self._build(weights)

    def _build(self, weights: Mapping[str, torch.Tensor]) -> None:
        self.convs = nn.ModuleList()
        self.pools: list[bool] = []
        for scope, inputs, outputs, pool in CONV_LAYERS:
            conv = nn.Conv2d(inputs, outputs, kernel_size=3, padding=1)  # 3x3 SAME, stride 1
            self._assign(conv, weights, scope)
            self.convs.append(conv)
            self.pools.append(pool)
        self.dense = nn.ModuleList()
        self.relus: list[bool] = []
        for scope, inputs, outputs, relu in DENSE_LAYERS:
            linear = nn.Linear(inputs, outputs)
            self._assign(linear, weights, scope)
            self.dense.append(linear)
            self.relus.append(relu)
        self.eval()

    @staticmethod
    def _assign(layer: nn.Module, weights: Mapping[str, torch.Tensor], scope: str) -> None:
        for ours, google in (("weight", "weights"), ("bias", "biases")):
            value = weights[f"{scope}/{google}"]
            expected = getattr(layer, ours).shape
            if tuple(value.shape) != tuple(expected):
                raise ValueError(f"{scope}/{google}: shape {tuple(value.shape)}, expected {tuple(expected)} "
                                 "(torch layout)")
            setattr(layer, ours, nn.Parameter(value, requires_grad=False))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        net = examples.unsqueeze(1)
        if self.convs[0].weight.is_contiguous(memory_format=torch.channels_last):
            net = net.contiguous(memory_format=torch.channels_last)
        for conv, pool in zip(self.convs, self.pools):
            net = torch.relu(conv(net))
            if pool:
                net = nn.functional.max_pool2d(net, 2)  # 96x64 halves evenly: SAME adds no padding
        net = net.permute(0, 2, 3, 1).flatten(1)  # TensorFlow's NHWC order: fc1_1's rows are Google's
        for linear, relu in zip(self.dense, self.relus):
            net = linear(net)
            if relu:
                net = torch.relu(net)
        return net


def google_weights(network: VGGishTorch) -> dict[str, np.ndarray]:
    """The network's weights back in Google's layout and names (round trip of to_torch_layout)."""
    scopes = [scope for scope, *_ in CONV_LAYERS] + [scope for scope, *_ in DENSE_LAYERS]
    layers = list(network.convs) + list(network.dense)
    weights = {}
    for scope, layer in zip(scopes, layers):
        kernel = layer.weight.detach().cpu()
        kernel = kernel.permute(2, 3, 1, 0) if kernel.ndim == 4 else kernel.t()
        weights[f"{scope}/weights"] = kernel.contiguous().numpy()
        weights[f"{scope}/biases"] = layer.bias.detach().cpu().numpy()
    return weights


@contextlib.contextmanager
def float32_precision(device: torch.device, precision: str) -> Iterator[None]:
    """Set how float32 matrix work runs on `device` for the block, then restore it.

    PyTorch lets cuDNN convolutions use TF32 by default on CUDA; AudioSet-compatible output needs
    IEEE float32, so "float32" turns TF32 off explicitly and only "tf32" turns it on. PyTorch 2.9
    replaced the allow_tf32 flags by fp32_precision settings (mixing the two raises): the new ones
    are used where they exist.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type != "cuda":
        with _autocast(device, precision):
            yield
        return
    new_api = hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision")
    if new_api:
        settings = [(torch.backends.cuda.matmul, "fp32_precision"), (torch.backends.cudnn.conv, "fp32_precision")]
        wanted = "tf32" if precision == "tf32" else "ieee"
    else:
        settings = [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")]
        wanted = precision == "tf32"
    saved = [getattr(owner, name) for owner, name in settings]
    for owner, name in settings:
        setattr(owner, name, wanted)
    try:
        with _autocast(device, precision):
            yield
    finally:
        for (owner, name), value in zip(settings, saved):
            setattr(owner, name, value)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TorchNetwork:
    """A VGGishTorch on a device, called with numpy or torch examples, in batches of `batch_size`."""

    def __init__(self, weights: Mapping[str, torch.Tensor], *, device: str = "cpu", precision: str = "float32",
                 batch_size: int = 64, channels_last: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cpu" and precision == "tf32":
            raise ValueError("tf32 exists on CUDA only; on the CPU use float32 (or bf16)")
        self.precision = precision
        self.batch_size = batch_size
        self.module = VGGishTorch(weights).to(self.device)
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def __call__(self, examples: np.ndarray | torch.Tensor, precision: str | None = None) -> np.ndarray:
        """[N, 96, 64] -> [N, 128] float32 numpy."""
        return self.run(torch.as_tensor(examples), precision).cpu().numpy()

    def run(self, examples: torch.Tensor, precision: str | None = None) -> torch.Tensor:
        """[N, 96, 64] tensor (any device) -> [N, 128] float32 tensor on this network's device.

        `precision` overrides the network's own for this call (to measure how far it is from float32)."""
        examples = examples.to(self.device, torch.float32)
        if not len(examples):
            return torch.zeros((0, VGGISH.embedding_size), device=self.device)
        parts = []
        with torch.inference_mode(), float32_precision(self.device, precision or self.precision):
            for start in range(0, len(examples), self.batch_size):
                parts.append(self.module(examples[start:start + self.batch_size]).float())
        return torch.cat(parts)
