//! The model's weights in VRAM, in their GGUF formats (no dequantized copy; spec 1201): one
//! device allocation holds every tensor at a 256-byte aligned offset. Uploaded from the
//! memory-mapped file in chunks through a pinned staging buffer, with progress logged at
//! 0/25/50/75/100 % (spec 1221-1222, 1621).
//!
//! With packing on, Q4_0 / Q4_1 / Q8_0 tensors (every one, the token embedding included) are
//! stored in the packed layout of [`crate::packed`] instead: each is uploaded into a temporary
//! device buffer (the size of the largest such tensor, freed after load) and repacked on the
//! GPU into its final place. Other types keep their GGUF layout, and so do the stacked experts
//! of a mixture of experts (three-dimensional tensors, read by `moe.cu` in GGUF blocks whatever
//! their type).

use std::sync::Arc;

use cudarc::driver::result;
use orcd_device::EngineError;
use orcd_model::gguf::TensorInfo;
use orcd_model::quant::GgmlType;
use orcd_model::{FfnKind, Model};

use crate::driver::check;
use crate::error::{CudaError, CudaResult};
use crate::kernels::Kernels;
use crate::operand::{GgufMatrix, PackedMatrix};
use crate::ops::Ops;
use crate::packed::{is_packed_type, packed_bytes};
use crate::vram::{DeviceBuffer, PinnedBuffer, Purpose, VramLedger};

/// Alignment of each tensor in the weights allocation (bytes).
const TENSOR_ALIGN: u64 = 256;
/// Size of the pinned staging buffer (bytes).
const STAGING_BYTES: usize = 16 << 20;

/// A weight tensor on the device.
#[derive(Copy, Clone, Debug)]
pub struct DevTensor {
    /// Device address of the first block.
    pub ptr: u64,
    pub ty: GgmlType,
    /// Elements per row (`ne[0]`).
    pub cols: usize,
    pub rows: usize,
    /// In the packed layout of [`crate::packed`] (else GGUF blocks).
    pub packed: bool,
}

/// A weight matrix in whichever layout it was uploaded in.
#[derive(Copy, Clone, Debug)]
pub enum Matrix {
    Packed(PackedMatrix),
    Gguf(GgufMatrix),
}

impl DevTensor {
    /// The tensor as the matrix of its layout.
    pub fn matrix(&self) -> Matrix {
        let (ptr, ty, rows, cols) = (self.ptr, self.ty, self.rows, self.cols);
        if self.packed {
            Matrix::Packed(PackedMatrix {
                ptr,
                ty,
                rows,
                cols,
            })
        } else {
            Matrix::Gguf(GgufMatrix {
                ptr,
                ty,
                rows,
                cols,
            })
        }
    }

    /// The tensor as a packed matrix, if it is stored packed.
    pub fn as_packed(&self) -> Option<PackedMatrix> {
        self.packed.then_some(PackedMatrix {
            ptr: self.ptr,
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
        })
    }

    /// The tensor as a GGUF-layout matrix, if it is stored so (every vector is: f32 norms
    /// and biases are never packed).
    pub fn as_gguf(&self) -> Option<GgufMatrix> {
        (!self.packed).then_some(GgufMatrix {
            ptr: self.ptr,
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
        })
    }
}

/// One layer's tensors on the device (see `orcd_model::LayerWeights` for shapes).
#[derive(Clone, Debug)]
pub struct GpuLayer {
    pub attn_norm: DevTensor,
    pub attn_q: DevTensor,
    pub attn_k: DevTensor,
    pub attn_v: DevTensor,
    pub attn_q_bias: Option<DevTensor>,
    pub attn_k_bias: Option<DevTensor>,
    pub attn_v_bias: Option<DevTensor>,
    pub attn_q_norm: Option<DevTensor>,
    pub attn_k_norm: Option<DevTensor>,
    pub attn_output: DevTensor,
    /// (n_heads) f32: each query head's attention sink logit (GPT-OSS).
    pub attn_sinks: Option<DevTensor>,
    pub post_attention_norm: Option<DevTensor>,
    pub ffn_norm: DevTensor,
    /// The router of a mixture of experts, (n_expert, dim), and its bias (n_expert) f32.
    pub ffn_gate_inp: Option<DevTensor>,
    pub ffn_gate_inp_bias: Option<DevTensor>,
    /// `None` on a plain FFN (GPT-2: `down(act(up(x)))`). With a mixture of experts, this,
    /// `ffn_up` and `ffn_down` are the experts stacked in GGUF layout (expert `e` is rows
    /// `e * rows / n_expert..`) and their biases are (n_expert, rows / n_expert) f32.
    pub ffn_gate: Option<DevTensor>,
    pub ffn_up: DevTensor,
    pub ffn_down: DevTensor,
    pub post_ffw_norm: Option<DevTensor>,
    /// LayerNorm biases (GPT-2) and projection biases (GPT-2; optional on Llama), each (rows) f32.
    pub attn_norm_bias: Option<DevTensor>,
    pub attn_output_bias: Option<DevTensor>,
    pub ffn_norm_bias: Option<DevTensor>,
    pub ffn_gate_bias: Option<DevTensor>,
    pub ffn_up_bias: Option<DevTensor>,
    pub ffn_down_bias: Option<DevTensor>,
}

/// All weights on the device.
#[derive(Debug)]
pub struct GpuWeights {
    /// The one allocation holding every tensor.
    _buffer: DeviceBuffer,
    pub token_embd: DevTensor,
    pub output_norm: DevTensor,
    pub output: DevTensor,
    /// The RoPE frequency factors (rope_dims / 2) f32 (Llama 3.1+, Phi-3), if the model has them.
    pub rope_factors: Option<DevTensor>,
    /// The final LayerNorm's bias (GPT-2).
    pub output_norm_bias: Option<DevTensor>,
    /// (context, dim): one learned row per position (GPT-2).
    pub position_embd: Option<DevTensor>,
    pub layers: Vec<GpuLayer>,
}

/// Rows `r0..r0 + n` of GGUF tensor `t` as a tensor of its own, named `<name>[<part>]`: a
/// fused projection (Phi-3's `attn_qkv` and gate+up `ffn_up`) is uploaded as its parts, each a
/// matrix of its own (packed on its own when packing is on), so the forward pass runs the same
/// ops as for split tensors. Each output row is the same dot product either way.
fn row_slice(t: &TensorInfo, part: &str, r0: usize, n: usize) -> CudaResult<TensorInfo> {
    let row_bytes =
        t.ty.row_bytes(t.row_len())
            .map_err(|e| CudaError::shape(e.to_string()))?;
    if t.dims.len() == 1 {
        // A bias vector: elements r0..r0 + n.
        if r0 + n > t.row_len() || t.ty != GgmlType::F32 {
            return Err(CudaError::shape(format!("part of the bias {}", t.name)));
        }
        return Ok(TensorInfo {
            name: format!("{}[{part}]", t.name),
            dims: vec![n as u64],
            ty: t.ty,
            offset: t.offset + (r0 * 4) as u64,
            size: (n * 4) as u64,
        });
    }
    if t.dims.len() != 2 || r0 + n > t.n_rows() {
        return Err(CudaError::shape(format!(
            "rows {r0}..{} of tensor {} ({:?})",
            r0 + n,
            t.name,
            t.dims
        )));
    }
    Ok(TensorInfo {
        name: format!("{}[{part}]", t.name),
        dims: vec![t.dims[0], n as u64],
        ty: t.ty,
        offset: t.offset + (r0 * row_bytes) as u64,
        size: (n * row_bytes) as u64,
    })
}

/// The parts of one fused tensor: (part name, rows).
fn parts(t: &TensorInfo, sizes: &[(&str, usize)]) -> CudaResult<Vec<TensorInfo>> {
    let mut r0 = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for &(part, n) in sizes {
        out.push(row_slice(t, part, r0, n)?);
        r0 += n;
    }
    Ok(out)
}

/// Every tensor as the device holds it: the model's tensors with each fused projection
/// replaced by its parts (q, k, v of `attn_qkv`; gate, up of a fused `ffn_up`).
fn device_tensors(model: &Model) -> CudaResult<Vec<TensorInfo>> {
    let c = &model.config;
    let mut fused: Vec<(&str, Vec<TensorInfo>)> = Vec::new();
    for l in &model.weights.layers {
        let qkv_sizes = [("q", c.q_dim()), ("k", c.kv_dim()), ("v", c.kv_dim())];
        for t in [&l.attn_qkv, &l.attn_qkv_bias].into_iter().flatten() {
            fused.push((&t.name, parts(t, &qkv_sizes)?));
        }
        if c.ffn == FfnKind::FusedGateUp {
            let sizes = [("gate", c.ffn_dim), ("up", c.ffn_dim)];
            for t in [Some(&l.ffn_up), l.ffn_up_bias.as_ref()]
                .into_iter()
                .flatten()
            {
                fused.push((&t.name, parts(t, &sizes)?));
            }
        }
    }
    let mut out = Vec::new();
    for t in model.weights.all() {
        match fused.iter().find(|(n, _)| *n == t.name) {
            Some((_, p)) => out.extend(p.iter().cloned()),
            None => out.push(t.clone()),
        }
    }
    Ok(out)
}

/// Whether tensor `t` is stored packed when packing is on: matrices of a packed type, not the
/// stacked experts (`moe.cu` reads those in their GGUF blocks).
fn packs(t: &TensorInfo) -> bool {
    is_packed_type(t.ty) && t.row_len().is_multiple_of(32) && t.dims.len() <= 2
}

/// Device bytes of tensor `t` (unaligned).
fn device_size(t: &TensorInfo, packed: bool) -> CudaResult<u64> {
    if packed && packs(t) {
        Ok(packed_bytes(t.ty, t.n_rows(), t.row_len())? as u64)
    } else {
        Ok(t.size)
    }
}

/// Bytes the weights take on the device (each tensor aligned), packed or not.
pub fn weights_bytes(model: &Model, packed: bool) -> CudaResult<u64> {
    device_tensors(model)?
        .iter()
        .map(|t| Ok(device_size(t, packed)?.next_multiple_of(TENSOR_ALIGN)))
        .sum()
}

impl GpuWeights {
    /// Allocate and upload every tensor of `model`; with `repack` (the loaded kernels), the
    /// packed types in the packed layout.
    pub fn upload(
        model: &Model,
        ledger: &Arc<VramLedger>,
        repack: Option<&Kernels>,
    ) -> Result<GpuWeights, EngineError> {
        let all = device_tensors(model)?;
        let packed = repack.is_some();
        let total = weights_bytes(model, packed)?;
        let buffer = ledger.alloc(total, Purpose::Weights)?;
        // The GGUF bytes of a tensor to repack land here first.
        let temp_bytes = all
            .iter()
            .filter(|t| packed && packs(t))
            .map(|t| t.size)
            .max();
        let temp = match temp_bytes {
            Some(b) => Some(ledger.alloc(b.next_multiple_of(TENSOR_ALIGN), Purpose::Scratch)?),
            None => None,
        };
        let mut staging = PinnedBuffer::new(ledger.gpu(), STAGING_BYTES)?;
        let mut offsets: Vec<(TensorInfo, u64)> = Vec::with_capacity(all.len());
        let mut offset = 0u64;
        let mut done = 0u64;
        let mut next_report = 0u64; // next percentage to log
        let gpu = ledger.gpu();
        let raw_total: u64 = all.iter().map(|t| t.size).sum();
        tracing::info!(
            event = "model_load_progress",
            percent = 0,
            bytes = total,
            "uploading weights"
        );
        next_report += 25;
        for t in &all {
            let data = model.tensor_data(t);
            let repack_here = match (repack, &temp) {
                (Some(k), Some(temp)) if packs(t) => Some((k, temp)),
                _ => None,
            };
            for chunk in data.chunks(STAGING_BYTES) {
                // The staging buffer is reused: wait for the previous copy out of it.
                gpu.synchronize()?;
                staging.as_mut_slice()[..chunk.len()].copy_from_slice(chunk);
                let at = chunk.as_ptr() as u64 - data.as_ptr() as u64;
                let dst = match repack_here {
                    Some((_, temp)) => temp.ptr_at(at)?,
                    None => buffer.ptr_at(offset + at)?,
                };
                // SAFETY: `dst..dst+len` lies inside `buffer` (offsets sum to `total`); the
                // source is pinned memory that stays untouched until the next synchronize.
                check(
                    unsafe {
                        result::memcpy_htod_async(
                            dst,
                            &staging.as_slice()[..chunk.len()],
                            gpu.stream(),
                        )
                    },
                    "cuMemcpyHtoDAsync(weights)",
                )?;
                done += chunk.len() as u64;
                while next_report <= 100 && done * 100 >= next_report * raw_total.max(1) {
                    tracing::info!(
                        event = "model_load_progress",
                        percent = next_report,
                        "uploading weights"
                    );
                    next_report += 25;
                }
            }
            if let Some((k, temp)) = repack_here {
                // Queued after the copies into `temp`; the next tensor's copies into `temp`
                // queue after it on the same stream.
                Ops::new(gpu, k).repack(
                    t.ty,
                    temp.ptr(),
                    buffer.ptr_at(offset)?,
                    t.n_rows(),
                    t.row_len(),
                )?;
            }
            offsets.push((t.clone(), offset));
            offset += device_size(t, packed)?.next_multiple_of(TENSOR_ALIGN);
        }
        gpu.synchronize()?;
        drop(temp);
        let base = buffer.ptr();
        // The device tensor of this name (a fused tensor's part has its own shape).
        let find = |t: &TensorInfo| -> Result<DevTensor, EngineError> {
            let (t, off) = offsets
                .iter()
                .find(|(d, _)| d.name == t.name)
                .map(|(d, o)| (d, *o))
                .ok_or_else(|| EngineError::BadTensor {
                    tensor: t.name.clone(),
                    problem: "not uploaded".into(),
                })?;
            Ok(DevTensor {
                ptr: base + off,
                ty: t.ty,
                cols: t.row_len(),
                rows: t.n_rows(),
                packed: packed && packs(t),
            })
        };
        let opt = |t: &Option<TensorInfo>| t.as_ref().map(&find).transpose();
        // A projection, split in the file or a part of a fused one (`device_tensors`).
        let part = |split: &Option<TensorInfo>, fused: Option<&TensorInfo>, name: &str| match (
            split, fused,
        ) {
            (Some(t), _) => find(t),
            (None, Some(f)) => find(&TensorInfo {
                name: format!("{}[{name}]", f.name),
                ..f.clone()
            }),
            (None, None) => Err(EngineError::BadTensor {
                tensor: name.into(),
                problem: "neither split nor fused in the file".into(),
            }),
        };
        let w = &model.weights;
        let fused_up = model.config.ffn == FfnKind::FusedGateUp;
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            layers.push(GpuLayer {
                attn_norm: find(&l.attn_norm)?,
                attn_q: part(&l.attn_q, l.attn_qkv.as_ref(), "q")?,
                attn_k: part(&l.attn_k, l.attn_qkv.as_ref(), "k")?,
                attn_v: part(&l.attn_v, l.attn_qkv.as_ref(), "v")?,
                attn_q_bias: match &l.attn_qkv_bias {
                    Some(b) => Some(part(&None, Some(b), "q")?),
                    None => opt(&l.attn_q_bias)?,
                },
                attn_k_bias: match &l.attn_qkv_bias {
                    Some(b) => Some(part(&None, Some(b), "k")?),
                    None => opt(&l.attn_k_bias)?,
                },
                attn_v_bias: match &l.attn_qkv_bias {
                    Some(b) => Some(part(&None, Some(b), "v")?),
                    None => opt(&l.attn_v_bias)?,
                },
                attn_q_norm: opt(&l.attn_q_norm)?,
                attn_k_norm: opt(&l.attn_k_norm)?,
                attn_output: find(&l.attn_output)?,
                attn_sinks: opt(&l.attn_sinks)?,
                post_attention_norm: opt(&l.post_attention_norm)?,
                ffn_norm: find(&l.ffn_norm)?,
                ffn_gate_inp: opt(&l.ffn_gate_inp)?,
                ffn_gate_inp_bias: opt(&l.ffn_gate_inp_bias)?,
                ffn_gate: match model.config.ffn {
                    FfnKind::Plain => None,
                    _ => Some(part(&l.ffn_gate, fused_up.then_some(&l.ffn_up), "gate")?),
                },
                attn_norm_bias: opt(&l.attn_norm_bias)?,
                attn_output_bias: opt(&l.attn_output_bias)?,
                ffn_norm_bias: opt(&l.ffn_norm_bias)?,
                ffn_gate_bias: match (&l.ffn_gate_bias, fused_up, &l.ffn_up_bias) {
                    (Some(b), _, _) => Some(find(b)?),
                    (None, true, Some(ub)) => Some(part(&None, Some(ub), "gate")?),
                    _ => None,
                },
                ffn_up_bias: match (fused_up, &l.ffn_up_bias) {
                    (true, Some(ub)) => Some(part(&None, Some(ub), "up")?),
                    (_, b) => opt(b)?,
                },
                ffn_down_bias: opt(&l.ffn_down_bias)?,
                ffn_up: if fused_up {
                    part(&None, Some(&l.ffn_up), "up")?
                } else {
                    find(&l.ffn_up)?
                },
                ffn_down: find(&l.ffn_down)?,
                post_ffw_norm: opt(&l.post_ffw_norm)?,
            });
        }
        Ok(GpuWeights {
            token_embd: find(&w.token_embd)?,
            output_norm: find(&w.output_norm)?,
            output: find(&w.output)?,
            rope_factors: opt(&w.rope_factors)?,
            output_norm_bias: opt(&w.output_norm_bias)?,
            position_embd: opt(&w.position_embd)?,
            layers,
            _buffer: buffer,
        })
    }
}
