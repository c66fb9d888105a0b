#!/usr/bin/env python3
"""Reference vectors for the engine's quantized tensor types (host/model/tests/quant_vectors.rs).

For every type NAME this writes, next to this script:
  NAME.bin      raw row bytes (whole blocks, ggml layout)
  NAME.deq.f32  gguf-py's dequantization of NAME.bin, little-endian f32
  NAME.src.f32  (types gguf-py can quantize: the floats and legacy quants) the f32 input that
                gguf-py's quantize turned into NAME.bin, so quantize_row can be checked too

gguf-py 0.19 has no quantizers for the K-quants (quantize raises NotImplementedError), so their
blocks are random bytes with sane f16 super-scales; every bit pattern of the other fields is a
valid block, and gguf-py's dequantize is the reference.

Also, when the real models are in .cache/models (scripts/fetch-models.sh), real_NAME.bin and
real_NAME.deq.f32: the first blocks of a tensor quantized by llama.cpp itself, for the types the
two models use (Q8_0, Q4_1, Q5_0, Q4_K, Q6_K).

MXFP4 (mxfp4.bin/.deq.f32/.src.f32 quantized by gguf-py, and mxfp4_raw.bin/.deq.f32: random
blocks over the whole exponent range, subnormal half-scales included) needs a gguf-py that knows
the type: the one in the llama-cpp-python 0.3.36 sdist (`vendor/llama.cpp/gguf-py`, on
PYTHONPATH). `python3 gen_vectors.py mxfp4` writes only those files (own seed).

Run: python3 gen_vectors.py   (needs `pip install gguf numpy`; deterministic, seed fixed)
"""

import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, quants

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "../../../../../.cache/models")
# (model file, tensor, type name): one tensor per type the real models use
REAL = [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "token_embd.weight", "q8_0"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "blk.0.ffn_down.weight", "q4_1"),
    ("gemma-3-270m-q4_k_m.gguf", "blk.0.attn_k.weight", "q5_0"),
    ("gemma-3-270m-q4_k_m.gguf", "blk.0.attn_output.weight", "q4_K"),
    ("gemma-3-270m-q4_k_m.gguf", "blk.0.ffn_down.weight", "q6_K"),
]
# at most this many weights from each real tensor (its first rows)
REAL_WEIGHTS = 1024
rng = np.random.default_rng(20261127)


def legacy_source(n_blocks: int, g: np.random.Generator = rng) -> np.ndarray:
    """n_blocks blocks of 32 with varied magnitudes, one all-zero and one constant block."""
    scales = np.exp(g.uniform(np.log(1e-3), np.log(10.0), size=(n_blocks, 1)))
    x = (g.standard_normal((n_blocks, 32)) * scales).astype(np.float32)
    x[1] = 0.0
    x[2] = np.float32(-0.75)
    return x.reshape(-1)


def float_source() -> np.ndarray:
    """64 values: normal ones, f16 subnormals, values past f16's range, signed zeros."""
    x = (rng.standard_normal(64) * 3.0).astype(np.float32)
    x[0:4] = [0.0, -0.0, 1e-6, -3e-7]  # f16 subnormals
    x[4:8] = [70000.0, -1e5, 65504.0, 3.0e38]  # beyond f16 / near f32 max
    x[8:10] = [np.inf, -np.inf]
    return x


def k_blocks(qtype: T, n_blocks: int) -> np.ndarray:
    """Random K-quant blocks whose f16 super-scales are sane (positive, not huge)."""
    _, type_size = quants.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    # byte offsets of the f16 super-scales: Q4_K/Q5_K d, dmin at 0, 2; Q6_K d at 208
    offsets = [208] if qtype == T.Q6_K else [0, 2]
    for off in offsets:
        d = np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), size=n_blocks)).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def write(name: str, data: np.ndarray, deq: np.ndarray, src: np.ndarray | None) -> None:
    with open(os.path.join(HERE, f"{name}.bin"), "wb") as f:
        f.write(np.ascontiguousarray(data).view(np.uint8).tobytes())
    with open(os.path.join(HERE, f"{name}.deq.f32"), "wb") as f:
        f.write(deq.astype("<f4").tobytes())
    if src is not None:
        with open(os.path.join(HERE, f"{name}.src.f32"), "wb") as f:
            f.write(src.astype("<f4").tobytes())


def main() -> None:
    for qtype, name in [(T.F32, "f32"), (T.F16, "f16"), (T.BF16, "bf16")]:
        src = float_source()
        with np.errstate(over="ignore"):  # f16 overflow to infinity is part of the test
            data = quants.quantize(src.reshape(1, -1), qtype).reshape(-1).view(np.uint8)
        deq = quants.dequantize(data, qtype).reshape(-1)
        write(name, data, deq, src)
    for qtype, name in [(T.Q4_0, "q4_0"), (T.Q4_1, "q4_1"), (T.Q5_0, "q5_0"),
                        (T.Q5_1, "q5_1"), (T.Q8_0, "q8_0")]:
        src = legacy_source(8)
        data = quants.quantize(src.reshape(1, -1), qtype).reshape(-1)
        deq = quants.dequantize(data, qtype).reshape(-1)
        write(name, data, deq, src)
    for qtype, name in [(T.Q4_K, "q4_K"), (T.Q5_K, "q5_K"), (T.Q6_K, "q6_K")]:
        data = k_blocks(qtype, 4)
        deq = quants.dequantize(data, qtype).reshape(-1)
        write(name, data, deq, None)


def real_vectors() -> None:
    for model, tensor, name in REAL:
        path = os.path.join(MODELS, model)
        if not os.path.exists(path):
            print(f"skipping real_{name}: {path} not fetched")
            continue
        t = next(t for t in GGUFReader(path).tensors if t.name == tensor)
        block_size, type_size = quants.GGML_QUANT_SIZES[t.tensor_type]
        data = np.asarray(t.data).reshape(-1)[: REAL_WEIGHTS // block_size * type_size]
        deq = quants.dequantize(data, t.tensor_type).reshape(-1)
        write(f"real_{name}", data, deq, None)


def mxfp4_vectors() -> None:
    mx = np.random.default_rng(20261207)
    src = legacy_source(8, mx)
    data = quants.quantize(src.reshape(1, -1), T.MXFP4).reshape(-1)
    write("mxfp4", data, quants.dequantize(data, T.MXFP4).reshape(-1), src)
    # every code and exponents 0..250 (0 and 1: subnormal half-scales); 251+ would overflow
    raw = mx.integers(0, 256, size=(16, 17), dtype=np.uint8)
    raw[:, 0] = np.concatenate([[0, 1, 2, 127, 128, 250], mx.integers(100, 150, size=10)])
    raw = raw.reshape(-1)
    write("mxfp4_raw", raw, quants.dequantize(raw, T.MXFP4).reshape(-1), None)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["mxfp4"]:
        main()
        real_vectors()
    mxfp4_vectors()
