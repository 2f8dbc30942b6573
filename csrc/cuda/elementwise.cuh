// The launch machinery of fastgan's one-tensor CUDA ops (penalty.cu, bias_leaky_relu.cu,
// penalty_sampling.cu): 16-byte vector walks over a dense range of memory, and the
// "sample slices" grid of the per-sample ops.
//
// Walks. An op sees a range [lo, hi) of element offsets from data_ptr() and is handed
// V-element vectors (16 bytes: 8 fp16/bf16, 4 fp32, 2 fp64) where every operand is
// 16-byte aligned, single elements elsewhere. When all operands sit at the same address
// modulo 16 bytes (always, unless an input is a view starting mid-vector, e.g. t[1:])
// the range is cut into a head of < V elements up to the first aligned one, the vector
// body, and a tail of < V elements; otherwise it is walked element by element.
// Each thread issues kLoadBytes of independent vector loads before it uses any: with
// 1024 threads per SM that is 64 KiB in flight per SM, several times what Little's law
// asks of an H100 (3.35 TB/s x ~0.7 us / 132 SMs = ~18 KiB).
//
// Sample slices. The penalty ops and interpolate work per sample (each sample one
// contiguous range of M elements): block k handles slice k % S of sample k / S, so a
// per-sample quantity (a norm's coefficient, an interpolation weight) is computed once
// per block instead of once per element (no 64-bit i / M in the inner loop), and a
// per-sample reduction is a split reduction: one partial per block, summed in a fixed
// order by a finalize kernel (deterministic; no atomics). S is chosen so that B * S is
// about kBlocksPerSM x the SM count even at B = 1, with slices of at least kMinSliceBytes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>

// #pragma unroll for the device pass only (the host pass, which the CPU emulation of
// the index math compiles, would warn about an unknown pragma); as multi_tensor_apply.cuh.
#ifndef FASTGAN_UNROLL
#if defined(__CUDA_ARCH__)
#define FASTGAN_UNROLL _Pragma("unroll")
#else
#define FASTGAN_UNROLL
#endif
#endif

namespace fastgan::ew {

template <typename scalar_t>
using opmath_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

inline constexpr int kThreads = 256;
// Bytes of independent loads a thread issues before it uses any: 4 vectors of a
// one-input op, 2 of each input of a two-input op. At 1024 threads per SM that is
// 64 KiB in flight per SM, and no kernel here needs more than 64 registers.
inline constexpr int kLoadBytes = 64;
// 4 x 256-thread blocks per SM: 1024 threads x kLoadBytes = 64 KiB of loads in flight
// per SM. Every kernel here is compiled for 4 resident blocks per SM (__launch_bounds__:
// <= 64 registers a thread; on sm_90 one spills, 12 bytes in sample_norm_act.cu's float64
// grad_sums_kernel with channel sums: ptxas -v, 2026-11-24), so a grid of kBlocksPerSM x SMs
// blocks runs in one wave: no SM idles through a second, partial one.
inline constexpr int kBlocksPerSM = 4;
// A block's slice: at least one full sweep of its threads' loads (256 x 64 B = 16 KiB).
inline constexpr int64_t kMinSliceBytes = int64_t{kThreads} * kLoadBytes;
// Slices start at multiples of 512 bytes from their sample's start, so a warp's vector
// loads cover whole 128-byte lines whenever the sample itself is aligned.
inline constexpr int64_t kSliceAlignBytes = 512;

template <typename scalar_t>
inline constexpr int kVec = static_cast<int>(16 / sizeof(scalar_t));

// N elements of T aligned to their full size: one load or store is one vector access.
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T val[N];
};

template <typename T, int N>
C10_HOST_DEVICE inline Vec<T, N> load_vec(const T* p, int64_t i) {
  return *reinterpret_cast<const Vec<T, N>*>(p + i);
}

template <typename T, int N>
C10_HOST_DEVICE inline void store_vec(T* p, int64_t i, const Vec<T, N>& v) {
  *reinterpret_cast<Vec<T, N>*>(p + i) = v;
}

// x in opmath. bf16 -> float is exact: the bits shifted up 16. Written out because
// c10's conversion goes through the element's address (a reinterpret_cast to
// __nv_bfloat16): with it, the bf16 kernels took up to 16 more registers than here
// (sm_90 ptxas) and three spilled under the 64-register cap.
template <typename T, typename scalar_t>
C10_HOST_DEVICE inline T to_op(scalar_t x) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    const auto bits = static_cast<uint32_t>(x.x) << 16;
#if defined(__CUDA_ARCH__)
    return static_cast<T>(__uint_as_float(bits));
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return static_cast<T>(f);
#endif
  } else {
    return static_cast<T>(x);
  }
}

// a * b + c with one rounding, whatever --fmad says.
template <typename T>
C10_HOST_DEVICE inline T fma_rn(T a, T b, T c) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    return __fmaf_rn(a, b, c);
  } else {
    return __fma_rn(a, b, c);
  }
#else
  if constexpr (std::is_same_v<T, float>) {
    return ::fmaf(a, b, c);
  } else {
    return ::fma(a, b, c);
  }
#endif
}

// Where a range sits relative to 16-byte vectors: residue = (address / elem_size) % V of
// element 0 of the first operand; vec_ok when every operand has that residue.
struct Alignment {
  int residue;
  bool vec_ok;
};

inline Alignment alignment_of(size_t elem_size, std::initializer_list<const void*> ptrs) {
  const auto first = reinterpret_cast<uintptr_t>(*ptrs.begin()) % 16;
  bool same = true;
  for (const void* p : ptrs) same = same && reinterpret_cast<uintptr_t>(p) % 16 == first;
  return Alignment{static_cast<int>(first / elem_size), same};
}

// Visits elements [lo, hi) as thread `rank` of `ranks` (consecutive ranks on consecutive
// vectors, so loads coalesce). Op provides:
//   Tile load(int64_t i)       the V elements of every operand at i (i V-aligned)
//   void vec(Tile&, int64_t i) uses them (computes, stores or accumulates)
//   void one(int64_t i)        one element, for the head, the tail and misaligned ranges
// Each thread visits its elements in a fixed order (head, body, tail), so a reduction
// over a walk is deterministic.
template <int V, typename Op>
C10_HOST_DEVICE inline void walk(int64_t lo, int64_t hi, Alignment al, int64_t rank, int64_t ranks,
                                 Op& op) {
  if (V > 1 && al.vec_ok) {
    // First V-aligned element at or after lo: (residue + a) % V == 0.
    const int64_t head = (V - (al.residue + lo) % V) % V;
    const int64_t a = head < hi - lo ? lo + head : hi;
    const int64_t nvec = (hi - a) / V;
    const int64_t b = a + nvec * V;
    if (rank < a - lo) op.one(lo + rank);  // a - lo < V <= ranks
    using Tile = typename Op::Tile;
    constexpr int U = sizeof(Tile) < kLoadBytes ? kLoadBytes / sizeof(Tile) : 1;
    for (int64_t first = rank; first < nvec; first += ranks * U) {
      Tile tile[U];
      FASTGAN_UNROLL
      for (int u = 0; u < U; ++u) {
        const int64_t k = first + u * ranks;
        if (k < nvec) tile[u] = op.load(a + k * V);
      }
      FASTGAN_UNROLL
      for (int u = 0; u < U; ++u) {
        const int64_t k = first + u * ranks;
        if (k < nvec) op.vec(tile[u], a + k * V);
      }
    }
    if (rank < hi - b) op.one(b + rank);  // hi - b < V <= ranks
  } else {
    for (int64_t i = lo + rank; i < hi; i += ranks) op.one(i);
  }
}

// ---- sample slices --------------------------------------------------------------------

// Block k: sample k / S, elements [k % S * len, min(M, (k % S + 1) * len)) of it.
struct Slices {
  int64_t M;    // elements per sample
  int64_t len;  // elements per slice (the last one of a sample may be shorter)
  int S;        // slices per sample
  Alignment al;
};

// SMs of a device, asked once per device: a driver call on every op call is host time
// for nothing. (ATen/cuda/CUDAContext.h would give the device properties, but it pulls
// in the cuBLAS headers, which a CUDA toolkit without cuBLAS does not have.)
inline int multiprocessor_count(int device) {
  constexpr int kCached = 128;
  static std::atomic<int> cache[kCached];  // 0: not asked yet
  if (device >= 0 && device < kCached) {
    const int n = cache[device].load(std::memory_order_relaxed);
    if (n > 0) return n;
  }
  int n = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  n = std::max(n, 1);
  if (device >= 0 && device < kCached) cache[device].store(n, std::memory_order_relaxed);
  return n;
}

C10_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// B samples of M >= 1 elements of elem_size bytes on a device with `sms` SMs.
inline Slices plan_slices(int64_t B, int64_t M, size_t elem_size, int sms, Alignment al) {
  const auto es = static_cast<int64_t>(elem_size);
  const int64_t target = int64_t{kBlocksPerSM} * sms;
  const int64_t min_slice = kMinSliceBytes / es;
  const int64_t align = kSliceAlignBytes / es;
  // Rounded down: B * S <= target keeps the grid in one wave (256 x 12288 fp32 on 132
  // SMs: S = 2, 512 blocks of 6144 elements; rounding up gave 768, 1.5 waves).
  int64_t S = std::min(target / B, ceil_div(M, min_slice));
  S = std::max<int64_t>(S, 1);
  const int64_t len = ceil_div(ceil_div(M, S), align) * align;
  S = ceil_div(M, len);  // rounding len up may leave the last slices empty: drop them
  TORCH_CHECK(B <= std::numeric_limits<int>::max() / S,
              "fastgan: too many samples for one launch (", B, " x ", S, " blocks)");
  return Slices{M, len, static_cast<int>(S), al};
}

inline dim3 slice_grid(int64_t B, const Slices& sl) {
  return dim3(static_cast<unsigned>(B * sl.S));
}

// Blocks of a flat grid-stride walk over n elements, each loading load_bytes (summed over
// the inputs): enough for one sweep of every thread's loads, at most one wave of
// resident blocks (grid-stride beyond).
inline unsigned flat_blocks(int64_t n, size_t load_bytes, int sms) {
  const int64_t per_block = int64_t{kThreads} * kLoadBytes / static_cast<int64_t>(load_bytes);
  const int64_t wave = int64_t{kBlocksPerSM} * sms;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(n, per_block), wave)));
}

// One block-wide sum in a fixed order (a shuffle tree per warp, then over the warps):
// the result is in thread 0. blockDim.x == kThreads.
template <typename T>
__device__ inline T block_sum(T v) {
  static_assert(kThreads % 32 == 0 && kThreads / 32 <= 32, "one warp sums the warps' sums");
  __shared__ T warp_sums[kThreads / 32];
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : T(0);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

// Block k of a sample-slices grid: op.begin(b) once (per-sample setup), the walk of its
// slice, then op.end(k) (e.g. the block's partial sum).
template <int V, typename Op>
__global__ void __launch_bounds__(kThreads, kBlocksPerSM)
    slice_kernel(Op op, const Slices sl) {
  const int64_t k = blockIdx.x;
  const int64_t b = k / sl.S;
  const int64_t s = k - b * sl.S;
  const int64_t start = b * sl.M + s * sl.len;
  const int64_t end = b * sl.M + std::min(sl.M, (s + 1) * sl.len);
  op.begin(b);
  walk<V>(start, end, sl.al, threadIdx.x, kThreads, op);
  op.end(k);
}

// ---- small vectors of any floating dtype ---------------------------------------------

// A per-channel parameter or statistic (weight, bias, running_mean, a 1-element k) may have
// another floating dtype than the data (fp32 parameters with bf16 x under autocast): it is
// read and written through a converting accessor, one uniform switch per access, rather
// than a kernel per dtype pair.
enum class FloatDtype : int { kFloat, kHalf, kBFloat16, kDouble };

inline FloatDtype float_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return FloatDtype::kFloat;
    case at::kHalf: return FloatDtype::kHalf;
    case at::kBFloat16: return FloatDtype::kBFloat16;
    default:
      TORCH_CHECK(t == at::kDouble, "fastgan: expected a floating dtype, got ", t);
      return FloatDtype::kDouble;
  }
}

template <typename T>
C10_HOST_DEVICE inline T load_float(const void* p, int64_t i, FloatDtype d) {
  switch (d) {
    case FloatDtype::kFloat: return static_cast<T>(static_cast<const float*>(p)[i]);
    case FloatDtype::kHalf: return to_op<T>(static_cast<const c10::Half*>(p)[i]);
    case FloatDtype::kBFloat16: return to_op<T>(static_cast<const c10::BFloat16*>(p)[i]);
    default: return static_cast<T>(static_cast<const double*>(p)[i]);
  }
}

// v rounded once to the element's dtype (through float for fp16/bf16, so a double v is
// rounded twice there: fp64 data with fp16 statistics does not occur in practice).
template <typename T>
C10_HOST_DEVICE inline void store_float(void* p, int64_t i, T v, FloatDtype d) {
  switch (d) {
    case FloatDtype::kFloat: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case FloatDtype::kHalf: static_cast<c10::Half*>(p)[i] = c10::Half(static_cast<float>(v)); break;
    case FloatDtype::kBFloat16:
      static_cast<c10::BFloat16*>(p)[i] = c10::BFloat16(static_cast<float>(v));
      break;
    default: static_cast<double*>(p)[i] = static_cast<double>(v); break;
  }
}

// A flat grid-stride walk over [0, n).
template <int V, typename Op>
__global__ void __launch_bounds__(kThreads, kBlocksPerSM)
    flat_kernel(Op op, int64_t n, const Alignment al) {
  const int64_t rank = int64_t{blockIdx.x} * kThreads + threadIdx.x;
  const int64_t ranks = int64_t{gridDim.x} * kThreads;
  walk<V>(0, n, al, rank, ranks, op);
}

// ---- accumulators -----------------------------------------------------------------------

// (count, mean, M2 = sum of squared deviations from the mean), merged by Chan et al.'s rule:
// the statistics of batch_norm_act.cu (per channel) and sample_norm_act.cu (per sample).
template <typename T>
struct Welford {
  T mean, m2;
  int64_t n;

  C10_HOST_DEVICE static Welford empty() { return Welford{T(0), T(0), 0}; }
  C10_HOST_DEVICE static Welford merge(const Welford& a, const Welford& b) {
    if (b.n == 0) return a;
    if (a.n == 0) return b;
    const int64_t n = a.n + b.n;
    const T fb = static_cast<T>(b.n) / static_cast<T>(n);
    const T delta = b.mean - a.mean;
    return Welford{a.mean + delta * fb, a.m2 + b.m2 + delta * delta * static_cast<T>(a.n) * fb, n};
  }
};

}  // namespace fastgan::ew
