"""Low-bit weights for bundled models: group-wise symmetric quantization, numpy only.

A ResNet18 backbone is 11.2 M weights: 22 MB in float16. Each group of 32 weights gets
one float16 scale (chosen to minimise the group's squared error) and 8- or 4-bit codes.
At 4 bits only the largest tensors (1 M weights or more: the last stage's convolutions,
75% of a ResNet18) are 4-bit and the rest 8-bit, because the early layers are the ones
that lose accuracy: 7.8 MB in all, and the same LFW accuracy as float16 (see the zoo's
MODEL_CARD.md files). Biases, batch-norm statistics and other small tensors stay float16.
A quantized tensor is stored as a dict {"codes", "scale", "shape", "bits"} in place of its
array and is expanded back to float32 on load, so everything after loading is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GROUP = 32
MIN_SIZE = 4096  # smaller tensors are not worth quantizing
LOW_BIT_SIZE = 1_000_000  # at bits=4, only tensors this large get 4-bit codes
_CLIPS = np.linspace(0.55, 1.0, 19)  # fractions of a group's max |w| tried as its range
_SMALLEST_SCALE = float(np.finfo(np.float16).smallest_subnormal)  # float16 rounds smaller ones to 0


def _quantize_groups(groups: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed integer codes and per-group scales minimising each group's squared error."""
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(groups).max(axis=1, keepdims=True)
    amax[amax == 0] = 1.0
    best_err = np.full((len(groups), 1), np.inf, dtype=np.float32)
    best_scale = amax / qmax
    for clip in _CLIPS:
        scale = np.maximum((amax * clip / qmax).astype(np.float16).astype(np.float32), _SMALLEST_SCALE)
        q = np.clip(np.round(groups / scale), -qmax - 1, qmax)
        err = ((q * scale - groups) ** 2).sum(axis=1, keepdims=True)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
    codes = np.clip(np.round(groups / best_scale), -qmax - 1, qmax).astype(np.int16)
    return codes, best_scale[:, 0].astype(np.float16)


def pack(array: np.ndarray, bits: int = 4) -> dict[str, Any] | np.ndarray:
    """A float array as packed low-bit codes plus scales (small arrays: float16 as is)."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim < 2 or array.size < MIN_SIZE:
        return array.astype(np.float16)
    flat = array.reshape(-1)
    flat = np.pad(flat, (0, -len(flat) % GROUP))
    codes, scale = _quantize_groups(flat.reshape(-1, GROUP), bits)
    unsigned = (codes + 2 ** (bits - 1)).astype(np.uint8).reshape(-1)
    if bits == 4:
        unsigned = unsigned[0::2] | (unsigned[1::2] << 4)
    return {"codes": unsigned, "scale": scale, "shape": np.array(array.shape, np.int64),
            "bits": np.array(bits, np.int64)}


def unpack(entry: dict[str, Any] | np.ndarray) -> np.ndarray:
    """The float32 array a `pack` result stands for (a non-float array as it is)."""
    if not isinstance(entry, dict):
        array = np.asarray(entry)
        return array.astype(np.float32) if array.dtype.kind == "f" else array
    bits = int(entry["bits"])
    codes = np.asarray(entry["codes"], dtype=np.uint8)
    if bits == 4:
        codes = np.stack([codes & 0x0F, codes >> 4], axis=1).reshape(-1)
    scale = np.asarray(entry["scale"], dtype=np.float32)
    values = (codes.astype(np.float32) - 2 ** (bits - 1)).reshape(len(scale), -1) * scale[:, None]
    shape = [int(d) for d in np.asarray(entry["shape"])]
    return values.reshape(-1)[: int(np.prod(shape))].reshape(shape)


def pack_state(state: dict[str, Any], bits: int = 4) -> dict[str, Any]:
    """Every float tensor of a state dict packed with `pack`; other entries unchanged.

    bits=4 packs only tensors of LOW_BIT_SIZE weights or more in 4 bits, the rest in 8.
    """
    out = {}
    for name, value in state.items():
        array = np.asarray(value)
        if array.dtype.kind != "f":
            out[name] = array
        else:
            out[name] = pack(array, bits if array.size >= LOW_BIT_SIZE else 8)
    return out


def unpack_state(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """The float32 state dict a `pack_state` result (or a plain float state) stands for."""
    return {name: unpack(value) for name, value in state.items()}
