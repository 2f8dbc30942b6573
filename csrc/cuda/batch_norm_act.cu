// BatchNorm + (leaky) ReLU on CUDA: batch_norm_act and batch_norm_act_backward (schemas and
// semantics: csrc/ops.cpp; element math and checks: csrc/batch_norm_act.h).
//
// x is seen as [outer][C][inner], inner = x.stride(1) (any dense layout: the channel of
// memory offset i is (i / inner) % C). Per-channel reductions are split reductions with
// one partial per (channel, slice) in a (S, C) workspace, merged in a fixed order, so a
// result repeats bit for bit on a device (S depends on its SM count), without atomics:
//   planes (inner > 1: NCHW; one channel: the whole tensor as one plane)
//     block (c, s) walks slice s of channel c's outer * inner elements, plane by plane,
//     in 16-byte vectors when inner is a multiple of the vector and x is 16-byte aligned
//     (one 64-bit division per thread, then the (plane, offset) position is stepped);
//     S = min(4 x SMs / C, slices of >= 16 KiB): C = 3 at 64 x 64 x 256 gets 176 x 3 blocks,
//     C = 1024 at 4 x 4 one block per channel (1024 blocks).
//   rows (inner == 1: channels_last, 2-D (N, C))
//     x is R = numel / C rows of C. A block covers CW = min(C, 256) channels and a slice of
//     rows; thread t owns channel t % CW and rows t / CW, + P, ... (P = 256 / CW lanes), so
//     consecutive threads read consecutive addresses (C = 3: 85 lanes of 3). The P lanes of
//     a channel are merged by a tree in shared memory. C = 1024: 4 channel tiles x S slices.
//   finalize: a block covers 8 channels (fewer when C < 8) with 256 / 8 = 32 lanes each;
//     lane p merges partials p, p + lanes, ... in order, then a tree over the lanes. The
//     row plan gives up to 4 x SMs slices (S = 528 on an H100 for 32 x 32 x 128 at batch
//     64): with 32 channels a block (8 lanes each, until 2026-11-22) a lane merged 66
//     partials one after another, and the H100 profile had DCGAN's and WGAN's finalize
//     kernels at 0.20 and 0.65 ms per step; 32 lanes cut the chain to 17 (not yet measured).
// Forward: per-thread shifted sums (shift = the thread's first element, so a large mean
// costs no precision), turned into (count, mean, M2) and merged by Chan's rule (blocks,
// then the finalize, which also updates the running statistics and computes
// scale_c = w_c * invstd_c, shift_c = b_c), then one elementwise pass in memory order.
// Backward: a split reduction of (sum g, sum g * xhat), a finalize (grad_weight, grad_bias,
// sum / n), then the elementwise grad_x pass: two passes over the data.
// Nothing is read back to the host (CUDA graphs can capture every launch).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

#include "../batch_norm_act.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

using ew::kThreads;
using ew::Vec;
using ew::Welford;

// ---- accumulators -----------------------------------------------------------------------

// (sum g, sum g * xhat) of the backward.
template <typename T>
struct GradSums {
  T g, gx;

  C10_HOST_DEVICE static GradSums empty() { return GradSums{T(0), T(0)}; }
  C10_HOST_DEVICE static GradSums merge(const GradSums& a, const GradSums& b) {
    return GradSums{a.g + b.g, a.gx + b.gx};
  }
};

// Merges the accumulators of the P lanes of each of CW channels: thread t = p * CW + j is
// lane p of channel j. A tree in a fixed order (lane p takes lane p + h, h = ceil(live / 2)):
// lane 0 returns the merge of all P lanes. Every thread of the block calls it; the first
// barrier lets a second call in one kernel reuse the buffer the last one's lane 0 still reads.
template <typename Acc>
__device__ Acc merge_lanes(const Acc& acc, int p, int P, int CW) {
  __shared__ alignas(16) unsigned char raw[kThreads * sizeof(Acc)];
  Acc* sm = reinterpret_cast<Acc*>(raw);
  const int t = static_cast<int>(threadIdx.x);
  __syncthreads();
  sm[t] = acc;
  __syncthreads();
  for (int live = P; live > 1;) {
    const int h = (live + 1) / 2;
    if (p < live - h) sm[t] = Acc::merge(sm[t], sm[t + h * CW]);
    live = h;
    __syncthreads();
  }
  return sm[t];
}

// ---- reducers: what a thread accumulates over its elements of one channel -------------
// begin(c) (the thread's channel), load<W>(i) (W elements of every operand at offset i),
// add<W>(tile), result().

template <typename scalar_t>
struct StatsReducer {
  using T = ew::opmath_t<scalar_t>;
  using Acc = Welford<T>;
  static constexpr int V = ew::kVec<scalar_t>;
  template <int W>
  struct Tile {
    Vec<scalar_t, W> x;
  };

  const scalar_t* __restrict__ x;
  T shift, s1, s2;  // sums of d = x - shift and d^2
  int64_t cnt;

  C10_HOST_DEVICE void begin(int64_t) {
    shift = s1 = s2 = T(0);
    cnt = 0;
  }
  template <int W>
  C10_HOST_DEVICE Tile<W> load(int64_t i) const {
    return Tile<W>{ew::load_vec<scalar_t, W>(x, i)};
  }
  template <int W>
  C10_HOST_DEVICE void add(const Tile<W>& t) {
    if (cnt == 0) shift = ew::to_op<T>(t.x.val[0]);
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const T d = ew::to_op<T>(t.x.val[j]) - shift;
      s1 += d;
      s2 += d * d;
    }
    cnt += W;
  }
  C10_HOST_DEVICE Acc result() const {
    if (cnt == 0) return Acc::empty();
    const T dm = s1 / static_cast<T>(cnt);
    const T m2 = s2 - s1 * dm;
    return Acc{shift + dm, m2 < T(0) ? T(0) : m2, cnt};  // (NaN stays NaN)
  }
};

template <typename scalar_t>
struct GradReducer {
  using T = ew::opmath_t<scalar_t>;
  using Acc = GradSums<T>;
  static constexpr int V = ew::kVec<scalar_t>;
  template <int W>
  struct Tile {
    Vec<scalar_t, W> dy, y, x;
  };

  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  const scalar_t* __restrict__ x;
  const T* __restrict__ mean;
  const T* __restrict__ invstd;
  T slope;
  T m, inv;
  Acc acc;

  C10_HOST_DEVICE void begin(int64_t c) {
    m = mean[c];
    inv = invstd[c];
    acc = Acc::empty();
  }
  template <int W>
  C10_HOST_DEVICE Tile<W> load(int64_t i) const {
    return Tile<W>{ew::load_vec<scalar_t, W>(dy, i), ew::load_vec<scalar_t, W>(y, i),
                   ew::load_vec<scalar_t, W>(x, i)};
  }
  template <int W>
  C10_HOST_DEVICE void add(const Tile<W>& t) {
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const T g = leaky_relu_grad(ew::to_op<T>(t.dy.val[j]), ew::to_op<T>(t.y.val[j]), slope);
      const T xhat = (ew::to_op<T>(t.x.val[j]) - m) * inv;
      acc.g += g;
      acc.gx += g * xhat;
    }
  }
  C10_HOST_DEVICE Acc result() const { return acc; }
};

// ---- the split reduction ----------------------------------------------------------------

struct ReducePlan {
  int64_t C, inner, outer;  // x as [outer][C][inner]
  bool rows;                // inner == 1 and C > 1: the row kernel
  int W;                    // planes: elements per unit (the vector, or 1)
  int64_t upp;              // planes: units per plane (inner / W)
  int64_t len;              // units (planes) or rows (rows) per slice
  int S;                    // slices per channel (planes) or row slices (rows)
  int CW, P, CT;            // rows: channels per block, lanes per channel, channel tiles

  int64_t blocks() const { return rows ? int64_t{S} * CT : C * S; }
};

// elem_bytes: the bytes of one element of every operand; vec_ok: every operand 16-byte
// aligned at element 0.
ReducePlan plan_reduce(int64_t numel, int64_t C, int64_t inner, int64_t elem_bytes, int V,
                       bool vec_ok, int sms) {
  ReducePlan p{};
  p.C = C;
  p.inner = inner;
  p.outer = numel / (C * inner);
  const int64_t target = int64_t{ew::kBlocksPerSM} * sms;
  int64_t S;
  if (inner == 1 && C > 1) {
    p.rows = true;
    p.W = 1;
    p.CW = static_cast<int>(std::min<int64_t>(C, kThreads));
    p.P = kThreads / p.CW;
    p.CT = static_cast<int>(ew::ceil_div(C, p.CW));
    const int64_t min_rows =
        std::max<int64_t>(p.P, ew::ceil_div(ew::kMinSliceBytes, p.CW * elem_bytes));
    S = std::min(std::max<int64_t>(target / p.CT, 1), ew::ceil_div(p.outer, min_rows));
    S = std::max<int64_t>(S, 1);
    p.len = ew::ceil_div(p.outer, S);
    S = ew::ceil_div(p.outer, p.len);
  } else {
    p.rows = false;
    p.W = vec_ok && inner % V == 0 ? V : 1;
    p.upp = inner / p.W;
    const int64_t units = p.outer * p.upp;
    const int64_t min_units = std::max<int64_t>(1, ew::kMinSliceBytes / (elem_bytes * p.W));
    S = std::min(std::max<int64_t>(target / C, 1), ew::ceil_div(units, min_units));
    S = std::max<int64_t>(S, 1);
    p.len = ew::ceil_div(units, S);
    S = ew::ceil_div(units, p.len);
  }
  p.S = static_cast<int>(S);
  TORCH_CHECK(p.blocks() <= std::numeric_limits<int>::max(),
              "fastgan: too many channels for one launch (", C, ")");
  return p;
}

// The thread bodies are host-device functions (a CPU emulation of the index math can run
// them); the kernels add the merge of the block's lanes.

// Independent loads a thread issues before it uses any: kLoadBytes of them, at most 8
// (scalar bf16 tiles would be 32, which spilled under the 64-register cap).
template <typename Tile>
C10_HOST_DEVICE constexpr int loads_per_round() {
  constexpr int u = sizeof(Tile) < ew::kLoadBytes ? ew::kLoadBytes / sizeof(Tile) : 1;
  return u < 8 ? u : 8;
}

// Block b = c * S + s of the plane grid: slice s of channel c, in units of W elements.
struct PlaneBlock {
  int64_t c, s;
};

C10_HOST_DEVICE inline PlaneBlock plane_block(const ReducePlan& pl, int64_t b) {
  const int64_t c = b / pl.S;
  return PlaneBlock{c, b - c * pl.S};
}

// Thread t of block b of the plane grid: the accumulator of its units.
template <int W, typename Red>
C10_HOST_DEVICE typename Red::Acc plane_thread(Red& red, const ReducePlan& pl, int64_t b,
                                               int64_t t) {
  using Tile = typename Red::template Tile<W>;
  constexpr int U = loads_per_round<Tile>();
  const PlaneBlock pb = plane_block(pl, b);
  const int64_t upp = pl.upp;
  const int64_t lo = pb.s * pl.len;
  const int64_t hi = std::min(pl.outer * upp, lo + pl.len);
  red.begin(pb.c);
  // Unit u of the channel: plane n = u / upp, unit r = u % upp of it, at element offset
  // ((n * C + c) * upp + r) * W. A thread steps u by 256: (n, r) by (step_n, step_r).
  const int64_t step_n = kThreads / upp;
  const int64_t step_r = kThreads - step_n * upp;
  int64_t u = lo + t;
  int64_t n = u / upp;
  int64_t r = u - n * upp;
  for (; u < hi; u += int64_t{kThreads} * U) {
    Tile tile[U];
    FASTGAN_UNROLL
    for (int k = 0; k < U; ++k) {
      if (u + int64_t{k} * kThreads < hi) {
        tile[k] = red.template load<W>(((n * pl.C + pb.c) * upp + r) * W);
      }
      r += step_r;
      n += step_n;
      if (r >= upp) {
        r -= upp;
        ++n;
      }
    }
    FASTGAN_UNROLL
    for (int k = 0; k < U; ++k) {
      if (u + int64_t{k} * kThreads < hi) red.template add<W>(tile[k]);
    }
  }
  return red.result();
}

template <int W, typename Red>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    plane_reduce_kernel(Red red, const ReducePlan pl, typename Red::Acc* __restrict__ partials) {
  const auto acc = plane_thread<W>(red, pl, blockIdx.x, threadIdx.x);
  const auto merged = merge_lanes(acc, static_cast<int>(threadIdx.x), kThreads, 1);
  const PlaneBlock pb = plane_block(pl, blockIdx.x);
  if (threadIdx.x == 0) partials[pb.s * pl.C + pb.c] = merged;
}

// Thread t of block b = s * CT + ct of the row grid: lane p of channel c (rows of slice s,
// channels [ct * CW, ct * CW + CW)); active: p < P and c < C.
struct RowThread {
  int64_t s, c;
  int p;
  bool active;
};

C10_HOST_DEVICE inline RowThread row_thread_at(const ReducePlan& pl, int64_t b, int t) {
  const int64_t s = b / pl.CT;
  const int64_t ct = b - s * pl.CT;
  const int p = t / pl.CW;
  const int64_t c = ct * pl.CW + (t - p * pl.CW);
  return RowThread{s, c, p, p < pl.P && c < pl.C};
}

template <typename Red>
C10_HOST_DEVICE typename Red::Acc row_thread(Red& red, const ReducePlan& pl, const RowThread& rt) {
  using Tile = typename Red::template Tile<1>;
  constexpr int U = loads_per_round<Tile>();
  red.begin(rt.active ? rt.c : 0);
  if (rt.active) {
    const int64_t lo = rt.s * pl.len;
    const int64_t hi = std::min(pl.outer, lo + pl.len);
    const int64_t P = pl.P;
    for (int64_t row = lo + rt.p; row < hi; row += P * U) {
      Tile tile[U];
      FASTGAN_UNROLL
      for (int k = 0; k < U; ++k) {
        const int64_t rk = row + k * P;
        if (rk < hi) tile[k] = red.template load<1>(rk * pl.C + rt.c);
      }
      FASTGAN_UNROLL
      for (int k = 0; k < U; ++k) {
        if (row + k * P < hi) red.template add<1>(tile[k]);
      }
    }
  }
  return red.result();
}

template <typename Red>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    row_reduce_kernel(Red red, const ReducePlan pl, typename Red::Acc* __restrict__ partials) {
  const RowThread rt = row_thread_at(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const auto acc = row_thread(red, pl, rt);
  const auto merged = merge_lanes(acc, rt.p, pl.P, pl.CW);
  if (rt.p == 0 && rt.c < pl.C) partials[rt.s * pl.C + rt.c] = merged;
}

template <typename Red>
void launch_reduce(const Red& red, const ReducePlan& pl, typename Red::Acc* partials,
                   cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(pl.blocks());
  if (pl.rows) {
    row_reduce_kernel<Red><<<blocks, kThreads, 0, stream>>>(red, pl, partials);
  } else if (pl.W == 1) {
    plane_reduce_kernel<1, Red><<<blocks, kThreads, 0, stream>>>(red, pl, partials);
  } else {
    plane_reduce_kernel<Red::V, Red><<<blocks, kThreads, 0, stream>>>(red, pl, partials);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Finalize blocks: kFinalWidth channels (fewer when C is smaller) x 256 / that lanes.
// Narrow blocks, many lanes: the serial part of the merge is S / lanes partials.
inline constexpr int64_t kFinalWidth = 8;

C10_HOST_DEVICE inline int final_width(int64_t C) {
  return static_cast<int>(C < kFinalWidth ? C : kFinalWidth);
}

// The merge of channel c's S partials (p, CW, P: this thread's lane, the block's width,
// lanes per channel); meaningful in lane 0.
template <typename Acc>
__device__ Acc merge_partials(const Acc* __restrict__ partials, int S, int64_t C, int64_t c, int p,
                              int P, int CW) {
  Acc acc = Acc::empty();
  if (p < P && c < C) {
    for (int64_t s = p; s < S; s += P) acc = Acc::merge(acc, partials[s * C + c]);
  }
  return merge_lanes(acc, p, P, CW);
}

// ---- forward ----------------------------------------------------------------------------

template <typename T>
struct StatsFinalize {
  const Welford<T>* partials;  // (S, C); unused without batch statistics
  int S;
  int64_t C;
  bool batch;
  void* running_mean;  // nullptr: none
  void* running_var;
  ew::FloatDtype rm_dtype, rv_dtype;
  const void* weight;  // nullptr: 1
  const void* bias;    // nullptr: 0
  ew::FloatDtype w_dtype, b_dtype;
  T momentum, one_minus_momentum, unbias, eps;  // unbias = n / (n - 1)
  T* mean;
  T* invstd;
  T* scale;
  T* shift;
};

template <typename T>
__global__ void __launch_bounds__(kThreads) stats_finalize_kernel(const StatsFinalize<T> f) {
  const int CW = final_width(f.C);
  const int P = kThreads / CW;
  const int t = static_cast<int>(threadIdx.x);
  const int p = t / CW;
  const int64_t c = int64_t{blockIdx.x} * CW + (t - p * CW);
  Welford<T> acc = Welford<T>::empty();
  if (f.batch) acc = merge_partials(f.partials, f.S, f.C, c, p, P, CW);
  if (p != 0 || c >= f.C) return;
  T mean, var;
  if (f.batch) {
    mean = acc.mean;
    var = acc.m2 / static_cast<T>(acc.n);
    if (f.running_mean != nullptr) {
      // BatchNorm2d's rule, as the reference rounds it: (1 - m) * r + m * s.
      const T rm = ew::load_float<T>(f.running_mean, c, f.rm_dtype);
      const T rv = ew::load_float<T>(f.running_var, c, f.rv_dtype);
      ew::store_float<T>(f.running_mean, c, f.one_minus_momentum * rm + f.momentum * mean,
                         f.rm_dtype);
      ew::store_float<T>(f.running_var, c,
                         f.one_minus_momentum * rv + f.momentum * (var * f.unbias), f.rv_dtype);
    }
  } else {
    mean = ew::load_float<T>(f.running_mean, c, f.rm_dtype);
    var = ew::load_float<T>(f.running_var, c, f.rv_dtype);
  }
  const T inv = T(1) / ::sqrt(var + f.eps);
  f.mean[c] = mean;
  f.invstd[c] = inv;
  f.scale[c] = f.weight != nullptr ? ew::load_float<T>(f.weight, c, f.w_dtype) * inv : inv;
  f.shift[c] = f.bias != nullptr ? ew::load_float<T>(f.bias, c, f.b_dtype) : T(0);
}

// The position of element idx in its channel's run of channel_stride elements, and the
// channel; step() moves to the next element in memory. index_t: uint32_t when the tensor
// has < 2^32 elements (a 64-bit division is a ~70-instruction routine on the GPU).
template <typename index_t>
struct ChannelPos {
  index_t r, c;

  C10_HOST_DEVICE ChannelPos(index_t idx, index_t cs, index_t C) {
    const index_t q = idx / cs;
    r = idx - q * cs;
    c = q % C;
  }
  // True when the channel changed.
  C10_HOST_DEVICE bool step(index_t cs, index_t C) {
    if (++r != cs) return false;
    r = 0;
    c = c + 1 == C ? 0 : c + 1;
    return true;
  }
};

// out = bn_act_value(x, mean_c, scale_c, shift_c, slope), in memory order.
template <typename scalar_t, typename index_t>
struct ApplyOp {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  using Tile = Vec<scalar_t, V>;

  const scalar_t* __restrict__ x;
  scalar_t* __restrict__ y;
  const T* __restrict__ mean;
  const T* __restrict__ scale;
  const T* __restrict__ shift;
  index_t cs, C;
  T slope;

  struct Coef {
    T m, a, b;
  };
  C10_HOST_DEVICE Coef coef(index_t c) const { return Coef{mean[c], scale[c], shift[c]}; }
  C10_HOST_DEVICE scalar_t value(scalar_t xi, const Coef& k) const {
    return static_cast<scalar_t>(bn_act_value(ew::to_op<T>(xi), k.m, k.a, k.b, slope));
  }
  C10_HOST_DEVICE Tile load(int64_t i) const { return ew::load_vec<scalar_t, V>(x, i); }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    ChannelPos<index_t> pos(static_cast<index_t>(i), cs, C);
    Coef k = coef(pos.c);
    Tile o;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) {
      o.val[j] = value(t.val[j], k);
      if (j + 1 < V && pos.step(cs, C)) k = coef(pos.c);
    }
    ew::store_vec<scalar_t, V>(y, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) {
    const ChannelPos<index_t> pos(static_cast<index_t>(i), cs, C);
    y[i] = value(x[i], coef(pos.c));
  }
};

template <typename Op>
void launch_flat(const Op& op, int64_t n, ew::Alignment al, int sms, cudaStream_t stream) {
  const unsigned blocks = ew::flat_blocks(n, sizeof(typename Op::Tile) / Op::V, sms);
  ew::flat_kernel<Op::V, Op><<<blocks, kThreads, 0, stream>>>(op, n, al);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// (channel_stride, C) for the elementwise passes; one channel: one run.
std::pair<int64_t, int64_t> apply_walk(const at::Tensor& x) {
  const int64_t C = x.size(1);
  return C == 1 ? std::pair<int64_t, int64_t>{x.numel(), 1} : std::pair{x.stride(1), C};
}

// The workspace of a reduction: S x C partials, then `vectors` (C,) T arrays (16-byte
// aligned). One byte tensor from the caching allocator.
template <typename Acc, typename T>
std::pair<Acc*, T*> carve(at::Tensor& work, int64_t partials, int64_t C, int vectors,
                          const at::Tensor& like) {
  const int64_t head = ew::ceil_div(partials * static_cast<int64_t>(sizeof(Acc)), 16) * 16;
  work = at::empty({head + vectors * C * static_cast<int64_t>(sizeof(T))},
                   like.options().dtype(at::kByte));
  auto* base = static_cast<unsigned char*>(work.mutable_data_ptr());
  return {reinterpret_cast<Acc*>(base), reinterpret_cast<T*>(base + head)};
}

bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cuda(
    const at::Tensor& x, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, double momentum,
    double eps, double negative_slope) {
  check_batch_norm_act(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps,
                       negative_slope, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t numel = x.numel();
  const int64_t C = x.size(1);
  const int64_t n = numel / C;
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor out = at::empty_like(x);  // x is dense: same strides
  at::Tensor mean = at::empty({C}, opts);
  at::Tensor invstd = at::empty({C}, opts);
  const int sms = ew::multiprocessor_count(x.get_device());
  const bool has_running = defined(running_mean);
  const std::pair<int64_t, int64_t> walk = apply_walk(x);
  const int64_t cs = walk.first, channels = walk.second;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batch_norm_act", [&] {
    using T = ew::opmath_t<scalar_t>;
    constexpr int V = ew::kVec<scalar_t>;
    const auto* xp = x.const_data_ptr<scalar_t>();
    auto* yp = out.mutable_data_ptr<scalar_t>();
    ReducePlan pl{};
    if (use_batch_stats) {
      const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {xp});
      pl = plan_reduce(numel, C, C == 1 ? numel : x.stride(1), sizeof(scalar_t), V,
                       al.vec_ok && al.residue == 0, sms);
    }
    at::Tensor work;
    auto [partials, vecs] =
        carve<Welford<T>, T>(work, use_batch_stats ? pl.S * C : 0, C, 2, x);
    T* scale = vecs;
    T* shift = vecs + C;
    if (use_batch_stats) {
      launch_reduce(StatsReducer<scalar_t>{xp, T(0), T(0), T(0), 0}, pl, partials, stream);
    }
    StatsFinalize<T> f{};
    f.partials = partials;
    f.S = use_batch_stats ? pl.S : 0;
    f.C = C;
    f.batch = use_batch_stats;
    if (has_running) {
      f.running_mean = running_mean->mutable_data_ptr();
      f.running_var = running_var->mutable_data_ptr();
      f.rm_dtype = ew::float_dtype(running_mean->scalar_type());
      f.rv_dtype = ew::float_dtype(running_var->scalar_type());
    }
    if (defined(weight)) {
      f.weight = weight->const_data_ptr();
      f.w_dtype = ew::float_dtype(weight->scalar_type());
    }
    if (defined(bias)) {
      f.bias = bias->const_data_ptr();
      f.b_dtype = ew::float_dtype(bias->scalar_type());
    }
    // Host scalars rounded once to T, as the reference's Python scalars are.
    f.momentum = static_cast<T>(momentum);
    f.one_minus_momentum = static_cast<T>(1.0 - momentum);
    f.unbias = static_cast<T>(static_cast<double>(n) / static_cast<double>(n - 1));
    f.eps = static_cast<T>(eps);
    f.mean = mean.mutable_data_ptr<T>();
    f.invstd = invstd.mutable_data_ptr<T>();
    f.scale = scale;
    f.shift = shift;
    const int CW = final_width(C);
    stats_finalize_kernel<T>
        <<<static_cast<unsigned>(ew::ceil_div(C, CW)), kThreads, 0, stream>>>(f);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {xp, yp});
    const auto s = static_cast<T>(negative_slope);
    const T* mp = mean.const_data_ptr<T>();
    if (numel <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
      launch_flat(ApplyOp<scalar_t, uint32_t>{xp, yp, mp, scale, shift, static_cast<uint32_t>(cs),
                                              static_cast<uint32_t>(channels), s},
                  numel, al, sms, stream);
    } else {
      launch_flat(ApplyOp<scalar_t, uint64_t>{xp, yp, mp, scale, shift, static_cast<uint64_t>(cs),
                                              static_cast<uint64_t>(channels), s},
                  numel, al, sms, stream);
    }
  });
  return {out, mean, invstd};
}

// ---- backward ---------------------------------------------------------------------------

template <typename T>
struct GradFinalize {
  const GradSums<T>* partials;  // (S, C)
  int S;
  int64_t C;
  const T* invstd;
  const void* weight;  // nullptr: 1
  ew::FloatDtype w_dtype;
  T n;  // elements per channel
  T* grad_weight;
  T* grad_bias;
  T* scale;    // w_c * invstd_c
  T* mean_g;   // sum_g / n
  T* mean_gx;  // sum_gx / n
};

template <typename T>
__global__ void __launch_bounds__(kThreads) grad_finalize_kernel(const GradFinalize<T> f) {
  const int CW = final_width(f.C);
  const int P = kThreads / CW;
  const int t = static_cast<int>(threadIdx.x);
  const int p = t / CW;
  const int64_t c = int64_t{blockIdx.x} * CW + (t - p * CW);
  const GradSums<T> acc = merge_partials(f.partials, f.S, f.C, c, p, P, CW);
  if (p != 0 || c >= f.C) return;
  f.grad_weight[c] = acc.gx;
  f.grad_bias[c] = acc.g;
  const T inv = f.invstd[c];
  f.scale[c] = f.weight != nullptr ? ew::load_float<T>(f.weight, c, f.w_dtype) * inv : inv;
  f.mean_g[c] = acc.g / f.n;
  f.mean_gx[c] = acc.gx / f.n;
}

// grad_x = bn_act_grad_x(g, xhat, scale_c, mean_g_c, mean_gx_c) (kBatch) or scale_c * g,
// g = leaky_relu_grad(grad_out, out, slope). Without batch statistics x is not read.
template <typename scalar_t, typename index_t, bool kBatch>
struct GradXOp {
  using T = ew::opmath_t<scalar_t>;
  static constexpr int V = ew::kVec<scalar_t>;
  struct TileBatch {
    Vec<scalar_t, V> dy, y, x;
  };
  struct TileEval {
    Vec<scalar_t, V> dy, y;
  };
  using Tile = std::conditional_t<kBatch, TileBatch, TileEval>;

  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  const scalar_t* __restrict__ x;
  scalar_t* __restrict__ dx;
  const T* __restrict__ mean;
  const T* __restrict__ invstd;
  const T* __restrict__ scale;
  const T* __restrict__ mean_g;
  const T* __restrict__ mean_gx;
  index_t cs, C;
  T slope;

  struct Coef {
    T m, inv, a, mg, mgx;
  };
  C10_HOST_DEVICE Coef coef(index_t c) const {
    if constexpr (kBatch) {
      return Coef{mean[c], invstd[c], scale[c], mean_g[c], mean_gx[c]};
    } else {
      return Coef{T(0), T(0), scale[c], T(0), T(0)};
    }
  }
  C10_HOST_DEVICE scalar_t grad(scalar_t dyi, scalar_t yi, scalar_t xi, const Coef& k) const {
    const T g = leaky_relu_grad(ew::to_op<T>(dyi), ew::to_op<T>(yi), slope);
    if constexpr (kBatch) {
      const T xhat = (ew::to_op<T>(xi) - k.m) * k.inv;
      return static_cast<scalar_t>(bn_act_grad_x(g, xhat, k.a, k.mg, k.mgx));
    } else {
      return static_cast<scalar_t>(k.a * g);
    }
  }
  C10_HOST_DEVICE Tile load(int64_t i) const {
    Tile t;
    t.dy = ew::load_vec<scalar_t, V>(dy, i);
    t.y = ew::load_vec<scalar_t, V>(y, i);
    if constexpr (kBatch) t.x = ew::load_vec<scalar_t, V>(x, i);
    return t;
  }
  C10_HOST_DEVICE void vec(const Tile& t, int64_t i) {
    ChannelPos<index_t> pos(static_cast<index_t>(i), cs, C);
    Coef k = coef(pos.c);
    Vec<scalar_t, V> o;
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) {
      if constexpr (kBatch) {
        o.val[j] = grad(t.dy.val[j], t.y.val[j], t.x.val[j], k);
      } else {
        o.val[j] = grad(t.dy.val[j], t.y.val[j], t.y.val[j], k);  // the last is unused
      }
      if (j + 1 < V && pos.step(cs, C)) k = coef(pos.c);
    }
    ew::store_vec<scalar_t, V>(dx, i, o);
  }
  C10_HOST_DEVICE void one(int64_t i) {
    const ChannelPos<index_t> pos(static_cast<index_t>(i), cs, C);
    dx[i] = grad(dy[i], y[i], kBatch ? x[i] : y[i], coef(pos.c));
  }
};

template <typename scalar_t, typename index_t>
void launch_grad_x(bool batch, const scalar_t* dy, const scalar_t* y, const scalar_t* x,
                   scalar_t* dx, const ew::opmath_t<scalar_t>* mean,
                   const ew::opmath_t<scalar_t>* invstd, const ew::opmath_t<scalar_t>* vecs,
                   int64_t C, int64_t numel, int64_t cs, int64_t channels, double slope, int sms,
                   cudaStream_t stream) {
  using T = ew::opmath_t<scalar_t>;
  const auto s = static_cast<T>(slope);
  const auto ics = static_cast<index_t>(cs);
  const auto ic = static_cast<index_t>(channels);
  if (batch) {
    launch_flat(GradXOp<scalar_t, index_t, true>{dy, y, x, dx, mean, invstd, vecs, vecs + C,
                                                 vecs + 2 * C, ics, ic, s},
                numel, ew::alignment_of(sizeof(scalar_t), {dy, y, x, dx}), sms, stream);
  } else {
    launch_flat(GradXOp<scalar_t, index_t, false>{dy, y, x, dx, mean, invstd, vecs, vecs + C,
                                                  vecs + 2 * C, ics, ic, s},
                numel, ew::alignment_of(sizeof(scalar_t), {dy, y, dx}), sms, stream);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& x,
    const std::optional<at::Tensor>& weight, const at::Tensor& mean, const at::Tensor& invstd,
    bool use_batch_stats, double negative_slope) {
  check_batch_norm_act_backward(grad_out, out, x, weight, mean, invstd, negative_slope,
                                c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t numel = x.numel();
  const int64_t C = x.size(1);
  const int64_t n = numel / C;
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_weight = at::empty({C}, opts);
  at::Tensor grad_bias = at::empty({C}, opts);
  const int sms = ew::multiprocessor_count(x.get_device());
  const std::pair<int64_t, int64_t> walk = apply_walk(x);
  const int64_t cs = walk.first, channels = walk.second;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "batch_norm_act_backward", [&] {
    using T = ew::opmath_t<scalar_t>;
    constexpr int V = ew::kVec<scalar_t>;
    const auto* dy = grad_out.const_data_ptr<scalar_t>();
    const auto* y = out.const_data_ptr<scalar_t>();
    const auto* xp = x.const_data_ptr<scalar_t>();
    auto* dx = grad_x.mutable_data_ptr<scalar_t>();
    const T* mp = mean.const_data_ptr<T>();
    const T* ip = invstd.const_data_ptr<T>();
    const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {dy, y, xp});
    const ReducePlan pl = plan_reduce(numel, C, C == 1 ? numel : x.stride(1),
                                      3 * sizeof(scalar_t), V, al.vec_ok && al.residue == 0, sms);
    at::Tensor work;
    auto [partials, vecs] = carve<GradSums<T>, T>(work, pl.S * C, C, 3, x);
    launch_reduce(GradReducer<scalar_t>{dy, y, xp, mp, ip, static_cast<T>(negative_slope), T(0),
                                        T(0), GradSums<T>::empty()},
                  pl, partials, stream);
    GradFinalize<T> f{};
    f.partials = partials;
    f.S = pl.S;
    f.C = C;
    f.invstd = ip;
    if (defined(weight)) {
      f.weight = weight->const_data_ptr();
      f.w_dtype = ew::float_dtype(weight->scalar_type());
    }
    f.n = static_cast<T>(n);
    f.grad_weight = grad_weight.mutable_data_ptr<T>();
    f.grad_bias = grad_bias.mutable_data_ptr<T>();
    f.scale = vecs;
    f.mean_g = vecs + C;
    f.mean_gx = vecs + 2 * C;
    const int CW = final_width(C);
    grad_finalize_kernel<T>
        <<<static_cast<unsigned>(ew::ceil_div(C, CW)), kThreads, 0, stream>>>(f);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (numel <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
      launch_grad_x<scalar_t, uint32_t>(use_batch_stats, dy, y, xp, dx, mp, ip, vecs, C, numel,
                                        cs, channels, negative_slope, sms, stream);
    } else {
      launch_grad_x<scalar_t, uint64_t>(use_batch_stats, dy, y, xp, dx, mp, ip, vecs, C, numel,
                                        cs, channels, negative_slope, sms, stream);
    }
  });
  return {grad_x, grad_weight, grad_bias};
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("batch_norm_act", &fastgan::batch_norm_act_cuda);
  m.impl("batch_norm_act_backward", &fastgan::batch_norm_act_backward_cuda);
}
