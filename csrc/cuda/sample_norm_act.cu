// Per-sample normalization + (leaky) ReLU on CUDA: sample_norm_act, sample_norm_act_backward
// and sample_norm_act_double_backward (schemas and formulas: csrc/ops.cpp; checks:
// csrc/sample_norm_act.h; element math: csrc/sample_norm_act_math.h; the plain-PyTorch
// oracles: fastgan/ops/sample_norm_act.py).
//
// Layout. x is (N, C, ...), dense, every sample one range of M = numel / N elements, so a
// sample is [A][C][B] in memory with B = x.stride(1): NCHW has A = 1, B = H*W; channels_last
// and 2-D have B = 1 (A = H*W, or 1); one channel is one run (A = 1, B = M). The channel of
// memory offset i is (i / B) % C (channel_walk in csrc/penalty.h).
//
// The grid ("cells"). Every kernel of the three ops walks the same grid, in which a block
// belongs to one sample and a thread to fixed channels: per-sample coefficients are
// computed once per block, per-channel ones (w_c, b_c, ggw_c, ggb_c) once per thread, and
// the inner loop does nothing but the element math (no per-element channel or sample
// index). A unit is W elements: 16 bytes when every operand is 16-byte aligned and the run
// allows it (8 bytes in the double backward, whose channels_last pass spilled with 16),
// else single elements.
//   planes (B > 1, or C == 1): a block covers G channels of one sample with L = 256 / G
//     lanes each, L the power of two >= the channel's units (at most 256; halved down to 32
//     while the lanes have < 4 units and the grid keeps a wave), consecutive threads on
//     consecutive units. NCHW 4 x 4 bf16 has 2 vectors a channel: L = 2, 128 channels a
//     block; 32 x 32 at batch 64: L = 32, 4 units a lane. A channel of >= 256 units may
//     get S blocks, one per slice of it.
//   rows (B == 1, C > 1): a block covers G = min(C / W, 256) units of channels (W channels a
//     thread) and a slice of the sample's A rows, L = 256 / G lanes of rows, S row slices:
//     channels_last 16 x 16 x 128 bf16 at batch 64 is 16 threads of 8 channels x 16 lanes,
//     4 slices (forward) or 8 (backward), 256 or 512 blocks.
//   S is chosen so that N x (channel groups) x S is about 4 blocks per SM (one wave) with
//   slices of >= 16 KiB of operands, as the other split reductions (elementwise.cuh).
// Reductions are deterministic without atomics: a thread's sums in a fixed order, a tree in
// shared memory over a block, block partials merged in a fixed order by whoever needs them.
// So results repeat bit for bit on a device (the plan depends on its SM count).
//
// Launches:
//   forward          K1  per block: Welford (count, mean, M2) of its elements (per-thread
//                        shifted sums, Chan merges over the block)
//                    K2  prologue: every block merges its sample's partials (all threads,
//                        fixed order), rstd = 1 / sqrt(var + eps); out = act(xhat w_c + b_c);
//                        the sample's first block writes mean and rstd
//   backward         K1  per block: (sum a, sum a xhat) of its sample; with channel_grads
//                        also (sum g xhat, sum g) per (sample, slice, channel)
//                    K2  prologue merges the sample's sums; grad_x = L(a)
//                    K3  channel_grads only: grad_weight, grad_bias = the per-channel
//                        partials merged in order (a block: 8 channels x 32 lanes)
//   double backward  K1  per block: S1, S2, SA, TA, SAG, SU, TU of its sample (ggx's
//                        sums skipped without ggx, SU/TU zero without ggw; no launch when
//                        both are None)
//                    K2  prologue merges the seven sums; d_grad_out, d_x; with weight and
//                        ggx also sum p g per (sample, slice, channel)
//                    K3  weight and ggx only: d_weight (zeros with weight and no ggx)
// A sum over a channel's elements weighted by w_c is taken as w_c times the thread's sum
// (sum a = sum_c w_c sum g): the same value as the schema's sum of a, in another order.
// Nothing is read back to the host: CUDA graphs can capture every launch.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
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
#include <type_traits>
#include <utility>

#include "../sample_norm_act.h"
#include "elementwise.cuh"

namespace fastgan {
namespace {

using ew::kThreads;
using ew::Vec;
using ew::Welford;

// ---- accumulators -----------------------------------------------------------------------

// K plain sums.
template <typename T, int K>
struct Sums {
  T v[K];

  C10_HOST_DEVICE static Sums empty() {
    Sums s;
    FASTGAN_UNROLL
    for (int k = 0; k < K; ++k) s.v[k] = T(0);
    return s;
  }
  C10_HOST_DEVICE static Sums merge(const Sums& a, const Sums& b) {
    Sums s;
    FASTGAN_UNROLL
    for (int k = 0; k < K; ++k) s.v[k] = a.v[k] + b.v[k];
    return s;
  }
};

// The seven per-sample sums of the double backward, in Sums<T, 7>.
enum : int { kS1, kS2, kSA, kTA, kSAG, kSU, kTU };

// Merges the accumulators of `lanes` threads: lane q of the caller's group is thread
// t + (q - p) * stride (the caller is lane p). A tree in a fixed order (lane q takes lane
// q + h, h = ceil(live / 2)), so the result repeats bit for bit. kAll: every thread gets
// lane 0's result (lanes = kThreads, stride 1: the whole block); else lane 0 of each group
// gets its group's. Every thread of the block calls it; threads with p >= lanes take no part.
template <typename Acc, bool kAll>
__device__ Acc merge_tree(const Acc& acc, int p, int lanes, int stride) {
  __shared__ alignas(16) unsigned char raw[kThreads * sizeof(Acc)];
  Acc* sm = reinterpret_cast<Acc*>(raw);
  const int t = static_cast<int>(threadIdx.x);
  __syncthreads();  // the buffer may still be read by a previous call
  sm[t] = acc;
  __syncthreads();
  for (int live = lanes; live > 1;) {
    const int h = (live + 1) / 2;
    if (p < live - h) sm[t] = Acc::merge(sm[t], sm[t + h * stride]);
    live = h;
    __syncthreads();
  }
  return kAll ? sm[0] : sm[t];
}

template <typename Acc>
__device__ Acc merge_block(const Acc& acc) {
  return merge_tree<Acc, true>(acc, static_cast<int>(threadIdx.x), kThreads, 1);
}

// The merge of sample n's `count` block partials in a fixed order (thread t takes
// partials t, t + 256, ..., then the block's tree), returned to every thread: each block
// of the sample computes the same bits.
template <typename Acc>
__device__ Acc merge_sample(const Acc* __restrict__ part, int64_t n, int64_t count) {
  Acc acc = Acc::empty();
  const Acc* mine = part + n * count;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) acc = Acc::merge(acc, mine[i]);
  return merge_block(acc);
}

template <typename T>
C10_HOST_DEVICE inline T sqrt_rn(T v) {  // correctly rounded (no --use_fast_math)
  if constexpr (std::is_same_v<T, float>) {
    return ::sqrtf(v);
  } else {
    return ::sqrt(v);
  }
}

// ---- the grid ---------------------------------------------------------------------------

struct Plan {
  int64_t N, M, C, A, B;  // N samples of [A][C][B]
  bool rows;              // B == 1 and C > 1
  int W;                  // elements per unit (16 bytes, or 1)
  int64_t units;          // planes: units of a channel (A * B / W); rows: rows of a sample (A)
  int64_t upp;            // planes: units per plane (B / W)
  int L, lg_l;            // lanes (planes: per channel, a power of two; rows: rows at once)
  int G;                  // planes: channels per block; rows: units of channels per block
  int64_t X;              // channel groups per sample
  int S;                  // slices (of a channel's units, or of a sample's rows)
  int64_t len;            // units or rows per slice
  int64_t step_r, step_off, wrap;  // planes: a lane's step of L units (see walk_cells)

  C10_HOST_DEVICE int64_t blocks() const { return N * X * S; }
  C10_HOST_DEVICE int64_t per_sample() const { return X * S; }
  C10_HOST_DEVICE int64_t channel_rows() const { return N * S; }  // rows of C per-channel partials
};

inline int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p *= 2;
  return p;
}

// elem_bytes: bytes of one element of every operand of the op; vec_ok: every operand
// 16-byte aligned at element 0.
Plan plan_cells(const at::Tensor& x, int64_t elem_bytes, int V, bool vec_ok, int sms) {
  Plan p{};
  p.N = x.size(0);
  p.M = x.numel() / p.N;
  p.C = x.size(1);
  if (p.C == 1) {
    p.A = 1;
    p.B = p.M;
  } else {
    p.B = x.stride(1);
    p.A = p.M / (p.C * p.B);
    TORCH_CHECK(p.B >= 1 && p.A * p.C * p.B == p.M, "sample_norm_act: unexpected strides ",
                x.strides(), " for shape ", x.sizes());
  }
  p.rows = p.B == 1 && p.C > 1;
  const int64_t target = int64_t{ew::kBlocksPerSM} * sms;
  int64_t S = 1;
  if (p.rows) {
    p.W = vec_ok && p.C % V == 0 ? V : 1;
    const int64_t cu = p.C / p.W;
    p.G = static_cast<int>(std::min<int64_t>(cu, kThreads));
    p.L = kThreads / p.G;
    p.X = ew::ceil_div(cu, p.G);
    p.units = p.A;
    const int64_t min_rows =
        std::max<int64_t>(p.L, ew::ceil_div(ew::kMinSliceBytes, int64_t{p.G} * p.W * elem_bytes));
    S = std::min(std::max<int64_t>(target / (p.N * p.X), 1), ew::ceil_div(p.A, min_rows));
  } else {
    p.W = vec_ok && p.B % V == 0 ? V : 1;
    p.upp = p.B / p.W;
    p.units = p.A * p.upp;
    p.L = static_cast<int>(std::min<int64_t>(next_pow2(p.units), kThreads));
    // Fewer lanes with more units each (down to a warp, up to 4 units a lane) while the grid
    // keeps one wave's blocks: NCHW 32 x 32 bf16 at batch 64 had 4096 blocks of 1-unit
    // lanes, each block merging its sample's partials and its lanes for 4 KiB of an operand.
    while (p.L > 32 && p.units < 4 * int64_t{p.L} &&
           p.N * ew::ceil_div(p.C, kThreads / (p.L / 2)) >= target) {
      p.L /= 2;
    }
    p.G = kThreads / p.L;
    p.X = ew::ceil_div(p.C, p.G);
    if (p.G == 1) {
      const int64_t min_units =
          std::max<int64_t>(p.L, ew::kMinSliceBytes / (elem_bytes * p.W));
      S = std::min(std::max<int64_t>(target / (p.N * p.C), 1), ew::ceil_div(p.units, min_units));
    }
    while ((1 << p.lg_l) < p.L) ++p.lg_l;
    // A lane steps L units: (plane, unit) by (L / upp, L % upp), in offset
    // step_off = (L / upp) * C * B + (L % upp) * W; crossing a plane's end adds
    // C * B - B (unit upp of plane a is unit 0 of plane a + 1).
    const int64_t step_a = p.L / p.upp;
    p.step_r = p.L - step_a * p.upp;
    p.step_off = step_a * p.C * p.B + p.step_r * p.W;
    p.wrap = p.C * p.B - p.B;
  }
  S = std::max<int64_t>(S, 1);
  p.len = ew::ceil_div(p.units, S);
  S = ew::ceil_div(p.units, p.len);
  p.S = static_cast<int>(S);
  TORCH_CHECK(p.blocks() <= std::numeric_limits<int>::max(),
              "sample_norm_act: too many samples or channels for one launch (", p.N, " x ", p.X,
              " x ", p.S, " blocks)");
  return p;
}

// Thread t of block k: sample n, slice s, its first channel c0 (planes: its channel; rows:
// W channels c0 ...), lane p of `stride`-spaced lanes (merge_tree).
struct Pos {
  int64_t n, s, c0;
  int p, stride;
  bool active;
  bool lead;  // the first block of its sample
};

template <bool kRows>
C10_HOST_DEVICE inline Pos pos_of(const Plan& pl, uint32_t k, int t) {
  const auto S = static_cast<uint32_t>(pl.S);
  const auto per = static_cast<uint32_t>(pl.X) * S;  // <= blocks() < 2^31
  const uint32_t n = k / per;
  const uint32_t rem = k - n * per;
  const uint32_t xg = rem / S;
  Pos q;
  q.n = n;
  q.s = rem - xg * S;
  q.lead = rem == 0;
  if constexpr (kRows) {
    const int j = t % pl.G;
    q.p = t / pl.G;
    q.c0 = (int64_t{xg} * pl.G + j) * pl.W;
    q.active = q.p < pl.L && q.c0 < pl.C;
    q.stride = pl.G;
  } else {
    q.p = t & (pl.L - 1);
    q.c0 = int64_t{xg} * pl.G + (t >> pl.lg_l);
    q.active = q.c0 < pl.C;
    q.stride = 1;
  }
  return q;
}

// Where the thread's per-channel partials go: row n * S + s of C, from channel c0.
C10_HOST_DEVICE inline int64_t channel_partial(const Plan& pl, const Pos& q) {
  return (q.n * pl.S + q.s) * pl.C + q.c0;
}

// The slot (index into the thread's per-channel values) of element j of a unit.
template <bool kRows>
C10_HOST_DEVICE constexpr int slot(int j) {
  return kRows ? j : 0;
}

// Independent loads a thread issues before it uses any (as batch_norm_act.cu): kLoadBytes of
// them, at most 4 tiles (more spilled under the 64-register cap in the scalar 16-bit walks,
// which keep every element in a register of its own).
template <typename Tile>
C10_HOST_DEVICE constexpr int loads_per_round() {
  constexpr int u = sizeof(Tile) < ew::kLoadBytes ? ew::kLoadBytes / sizeof(Tile) : 1;
  return u < 4 ? u : 4;
}

// The next unit of a lane, L units on: offset o; planes: rr its unit in the plane.
template <bool kRows>
C10_HOST_DEVICE inline void advance(const Plan& pl, int64_t& o, int64_t& rr) {
  if constexpr (kRows) {
    o += int64_t{pl.L} * pl.C;
  } else {
    o += pl.step_off;
    rr += pl.step_r;
    if (rr >= pl.upp) {
      rr -= pl.upp;
      o += pl.wrap;
    }
  }
}

// Visits the thread's units in a fixed order: body.load(off) (a Tile of every operand at
// element offset off), body.use(tile, off).
//   planes: units u = lo + p, lo + p + L, ... of the slice [lo, hi) of channel c0 of sample
//     n; unit u is unit r = u % upp of plane a = u / upp, at n M + (a C + c0) B + r W.
//   rows: rows lo + p, lo + p + L, ... of the slice, at n M + row C + c0.
// Body::kRound tiles are loaded before any is used.
template <bool kRows, typename Body>
C10_HOST_DEVICE void walk_cells(const Plan& pl, const Pos& q, Body& body) {
  using Tile = typename Body::Tile;
  constexpr int U = Body::kRound;
  if (!q.active) return;
  const int64_t lo = q.s * pl.len;
  const int64_t hi = std::min(pl.units, lo + pl.len);
  const int64_t L = pl.L;
  int64_t u = lo + q.p;
  int64_t off, r = 0;
  if constexpr (kRows) {
    off = q.n * pl.M + u * pl.C + q.c0;
  } else {
    const int64_t a = pl.A == 1 ? 0 : u / pl.upp;
    r = u - a * pl.upp;
    off = q.n * pl.M + (a * pl.C + q.c0) * pl.B + r * pl.W;
  }
  for (; u < hi; u += L * U) {
    Tile tile[U];
    int64_t o = off, rr = r;  // the round's first unit, stepped again as the tiles are used
    FASTGAN_UNROLL
    for (int k = 0; k < U; ++k) {
      if (u + k * L < hi) tile[k] = body.load(off);
      advance<kRows>(pl, off, r);
    }
    FASTGAN_UNROLL
    for (int k = 0; k < U; ++k) {
      if (u + k * L < hi) body.use(tile[k], o);
      advance<kRows>(pl, o, rr);
    }
  }
}

// A floating (C,) vector of any dtype (nullptr: absent), read in T.
struct Param {
  const void* ptr = nullptr;
  ew::FloatDtype dtype = ew::FloatDtype::kFloat;
};

// The thread's values of a per-channel vector: channel c0 + k in slot k (dflt when the
// vector is absent or the thread inactive).
template <typename T, int K>
C10_HOST_DEVICE inline void load_slots(T (&dst)[K], const Param& v, const Pos& q, T dflt) {
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) {
    dst[k] = v.ptr != nullptr && q.active ? ew::load_float<T>(v.ptr, q.c0 + k, v.dtype) : dflt;
  }
}

// ---- forward ----------------------------------------------------------------------------

template <typename scalar_t, int W>
struct StatsBody {
  using T = ew::opmath_t<scalar_t>;
  using Tile = Vec<scalar_t, W>;
  static constexpr int kRound = loads_per_round<Tile>();

  const scalar_t* __restrict__ x;
  T shift, s1, s2;  // sums of d = x - shift and d^2, shift = the thread's first element
  int64_t cnt;

  C10_HOST_DEVICE Tile load(int64_t i) const { return ew::load_vec<scalar_t, W>(x, i); }
  C10_HOST_DEVICE void use(const Tile& t, int64_t) {
    if (cnt == 0) shift = ew::to_op<T>(t.val[0]);
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const T d = ew::to_op<T>(t.val[j]) - shift;
      s1 += d;
      s2 += d * d;
    }
    cnt += W;
  }
  C10_HOST_DEVICE Welford<T> result() const {
    if (cnt == 0) return Welford<T>::empty();
    const T dm = s1 / static_cast<T>(cnt);
    const T m2 = s2 - s1 * dm;
    return Welford<T>{shift + dm, m2 < T(0) ? T(0) : m2, cnt};  // (NaN stays NaN)
  }
};

// The thread bodies are host-device functions (a CPU emulation of the index math and the
// element math can run them); the kernels add the merges of the block.

template <typename scalar_t, int W, bool kRows>
C10_HOST_DEVICE Welford<ew::opmath_t<scalar_t>> stats_thread(const Plan& pl, const Pos& q,
                                                             const scalar_t* x) {
  using T = ew::opmath_t<scalar_t>;
  StatsBody<scalar_t, W> body{x, T(0), T(0), T(0), 0};
  walk_cells<kRows>(pl, q, body);
  return body.result();
}

template <typename scalar_t, int W, bool kRows>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    stats_kernel(const Plan pl, const scalar_t* __restrict__ x,
                 Welford<ew::opmath_t<scalar_t>>* __restrict__ part) {
  const Pos q = pos_of<kRows>(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const auto acc = merge_block(stats_thread<scalar_t, W, kRows>(pl, q, x));
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

template <typename T>
struct ForwardArgs {
  const Welford<T>* part;
  Param weight, bias;
  T eps, slope;
  T* mean;
  T* rstd;
};

// out = act(sample_norm_value(x, mean, rstd, w_c, b_c)).
template <typename scalar_t, int W, bool kRows>
struct ApplyBody {
  using T = ew::opmath_t<scalar_t>;
  using Tile = Vec<scalar_t, W>;
  static constexpr int kRound = loads_per_round<Tile>();
  static constexpr int K = kRows ? W : 1;

  const scalar_t* __restrict__ x;
  scalar_t* __restrict__ y;
  T mean, rstd, slope;
  T w[K], b[K];

  C10_HOST_DEVICE Tile load(int64_t i) const { return ew::load_vec<scalar_t, W>(x, i); }
  C10_HOST_DEVICE void use(const Tile& t, int64_t i) const {
    Tile o;
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const int k = slot<kRows>(j);
      const T v = sample_norm_value(ew::to_op<T>(t.val[j]), mean, rstd, w[k], b[k]);
      o.val[j] = static_cast<scalar_t>(leaky_relu_value(v, slope));
    }
    ew::store_vec<scalar_t, W>(y, i, o);
  }
};

// rstd = 1 / sqrt(var + eps) of a sample's merged statistics, var = M2 / M.
template <typename T>
C10_HOST_DEVICE inline T sample_rstd(const Welford<T>& st, T eps) {
  const T var = st.m2 / static_cast<T>(st.n);
  return T(1) / sqrt_rn(var + eps);
}

template <typename scalar_t, int W, bool kRows>
C10_HOST_DEVICE void apply_thread(const Plan& pl, const Pos& q, const scalar_t* x, scalar_t* y,
                                  ew::opmath_t<scalar_t> mean, ew::opmath_t<scalar_t> rstd,
                                  const ForwardArgs<ew::opmath_t<scalar_t>>& f) {
  using T = ew::opmath_t<scalar_t>;
  ApplyBody<scalar_t, W, kRows> body{x, y, mean, rstd, f.slope, {}, {}};
  load_slots(body.w, f.weight, q, T(1));
  load_slots(body.b, f.bias, q, T(0));
  walk_cells<kRows>(pl, q, body);
}

template <typename scalar_t, int W, bool kRows>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    apply_kernel(const Plan pl, const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                 const ForwardArgs<ew::opmath_t<scalar_t>> f) {
  using T = ew::opmath_t<scalar_t>;
  const Pos q = pos_of<kRows>(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const Welford<T> st = merge_sample(f.part, q.n, pl.per_sample());
  const T rstd = sample_rstd(st, f.eps);
  if (q.lead && threadIdx.x == 0) {
    f.mean[q.n] = st.mean;
    f.rstd[q.n] = rstd;
  }
  apply_thread<scalar_t, W, kRows>(pl, q, x, y, st.mean, rstd, f);
}

// ---- backward ---------------------------------------------------------------------------

template <typename scalar_t, int W>
struct GradTile {
  Vec<scalar_t, W> dy, y, x;
};

template <typename T>
struct BackwardArgs {
  const T* mean;  // (N,)
  const T* rstd;
  Param weight;
  T slope;
  Sums<T, 2>* part;   // K1: per block (sum a, sum a xhat); K2 reads them
  Sums<T, 2>* cpart;  // K1 with channel grads: (sum g xhat, sum g) per (n * S + s, c)
};

// K1: the thread's sum g and sum g xhat per channel slot.
template <typename scalar_t, int W, bool kRows>
struct GradSumsBody {
  using T = ew::opmath_t<scalar_t>;
  using Tile = GradTile<scalar_t, W>;
  static constexpr int kRound = loads_per_round<Tile>();
  static constexpr int K = kRows ? W : 1;

  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  const scalar_t* __restrict__ x;
  T mean, rstd, slope;
  T sg[K], sgx[K];

  C10_HOST_DEVICE Tile load(int64_t i) const {
    return Tile{ew::load_vec<scalar_t, W>(dy, i), ew::load_vec<scalar_t, W>(y, i),
                ew::load_vec<scalar_t, W>(x, i)};
  }
  C10_HOST_DEVICE void use(const Tile& t, int64_t) {
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const int k = slot<kRows>(j);
      const T g = leaky_relu_grad(ew::to_op<T>(t.dy.val[j]), ew::to_op<T>(t.y.val[j]), slope);
      const T xhat = (ew::to_op<T>(t.x.val[j]) - mean) * rstd;
      sg[k] += g;
      sgx[k] += g * xhat;
    }
  }
};

template <typename scalar_t, int W, bool kRows>
C10_HOST_DEVICE GradSumsBody<scalar_t, W, kRows> grad_sums_thread(
    const Plan& pl, const Pos& q, const scalar_t* dy, const scalar_t* y, const scalar_t* x,
    const BackwardArgs<ew::opmath_t<scalar_t>>& f) {
  using T = ew::opmath_t<scalar_t>;
  using Body = GradSumsBody<scalar_t, W, kRows>;
  Body body{dy, y, x, f.mean[q.n], f.rstd[q.n], f.slope, {}, {}};
  FASTGAN_UNROLL
  for (int k = 0; k < Body::K; ++k) body.sg[k] = body.sgx[k] = T(0);
  walk_cells<kRows>(pl, q, body);
  return body;
}

// The thread's share of the sample's (sum a, sum a xhat) = sum_c w_c (sum g, sum g xhat).
template <typename scalar_t, int W, bool kRows>
C10_HOST_DEVICE Sums<ew::opmath_t<scalar_t>, 2> grad_sample_share(
    const GradSumsBody<scalar_t, W, kRows>& body, const Pos& q,
    const BackwardArgs<ew::opmath_t<scalar_t>>& f) {
  using T = ew::opmath_t<scalar_t>;
  constexpr int K = GradSumsBody<scalar_t, W, kRows>::K;
  T w[K];
  load_slots(w, f.weight, q, T(1));
  Sums<T, 2> mine = Sums<T, 2>::empty();
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) {
    mine.v[0] += w[k] * body.sg[k];
    mine.v[1] += w[k] * body.sgx[k];
  }
  return mine;
}

// The thread's per-channel sums, (sum g xhat, sum g) of slot k in components 2k, 2k + 1.
template <typename scalar_t, int W, bool kRows>
C10_HOST_DEVICE Sums<ew::opmath_t<scalar_t>, 2 * GradSumsBody<scalar_t, W, kRows>::K>
grad_channel_share(const GradSumsBody<scalar_t, W, kRows>& body) {
  constexpr int K = GradSumsBody<scalar_t, W, kRows>::K;
  Sums<ew::opmath_t<scalar_t>, 2 * K> ch;
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) {
    ch.v[2 * k] = body.sgx[k];
    ch.v[2 * k + 1] = body.sg[k];
  }
  return ch;
}

template <typename scalar_t, int W, bool kRows, bool kChannel>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    grad_sums_kernel(const Plan pl, const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                     const scalar_t* __restrict__ x, const BackwardArgs<ew::opmath_t<scalar_t>> f) {
  using T = ew::opmath_t<scalar_t>;
  constexpr int K = GradSumsBody<scalar_t, W, kRows>::K;
  const Pos q = pos_of<kRows>(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const auto body = grad_sums_thread<scalar_t, W, kRows>(pl, q, dy, y, x, f);
  const Sums<T, 2> acc = merge_block(grad_sample_share(body, q, f));
  if (threadIdx.x == 0) f.part[blockIdx.x] = acc;
  if constexpr (kChannel) {
    const Sums<T, 2 * K> merged =
        merge_tree<Sums<T, 2 * K>, false>(grad_channel_share(body), q.p, pl.L, q.stride);
    if (q.p == 0 && q.active) {
      Sums<T, 2>* row = f.cpart + channel_partial(pl, q);
      FASTGAN_UNROLL
      for (int k = 0; k < K; ++k) row[k] = Sums<T, 2>{{merged.v[2 * k], merged.v[2 * k + 1]}};
    }
  }
}

// K2: grad_x = sample_norm_l(g w_c, xhat, rstd, sum a / M, sum a xhat / M).
template <typename scalar_t, int W, bool kRows>
struct GradXBody {
  using T = ew::opmath_t<scalar_t>;
  using Tile = GradTile<scalar_t, W>;
  static constexpr int kRound = loads_per_round<Tile>();
  static constexpr int K = kRows ? W : 1;

  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  const scalar_t* __restrict__ x;
  scalar_t* __restrict__ dx;
  T mean, rstd, slope, mean_s, mean_sx;
  T w[K];

  C10_HOST_DEVICE Tile load(int64_t i) const {
    return Tile{ew::load_vec<scalar_t, W>(dy, i), ew::load_vec<scalar_t, W>(y, i),
                ew::load_vec<scalar_t, W>(x, i)};
  }
  C10_HOST_DEVICE void use(const Tile& t, int64_t i) const {
    Vec<scalar_t, W> o;
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const int k = slot<kRows>(j);
      const T g = leaky_relu_grad(ew::to_op<T>(t.dy.val[j]), ew::to_op<T>(t.y.val[j]), slope);
      const T xhat = (ew::to_op<T>(t.x.val[j]) - mean) * rstd;
      o.val[j] = static_cast<scalar_t>(sample_norm_l(g * w[k], xhat, rstd, mean_s, mean_sx));
    }
    ew::store_vec<scalar_t, W>(dx, i, o);
  }
};

// tot: the sample's (sum a, sum a xhat).
template <typename scalar_t, int W, bool kRows>
C10_HOST_DEVICE void grad_x_thread(const Plan& pl, const Pos& q, const scalar_t* dy,
                                   const scalar_t* y, const scalar_t* x, scalar_t* dx,
                                   const Sums<ew::opmath_t<scalar_t>, 2>& tot,
                                   const BackwardArgs<ew::opmath_t<scalar_t>>& f) {
  using T = ew::opmath_t<scalar_t>;
  const auto m = static_cast<T>(pl.M);
  GradXBody<scalar_t, W, kRows> body{dy, y, x, dx, f.mean[q.n], f.rstd[q.n], f.slope,
                                     tot.v[0] / m, tot.v[1] / m, {}};
  load_slots(body.w, f.weight, q, T(1));
  walk_cells<kRows>(pl, q, body);
}

template <typename scalar_t, int W, bool kRows>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    grad_x_kernel(const Plan pl, const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                  const scalar_t* __restrict__ x, scalar_t* __restrict__ dx,
                  const BackwardArgs<ew::opmath_t<scalar_t>> f) {
  const Pos q = pos_of<kRows>(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const auto tot = merge_sample(f.part, q.n, pl.per_sample());
  grad_x_thread<scalar_t, W, kRows>(pl, q, dy, y, x, dx, tot, f);
}

// ---- per-channel finalize -----------------------------------------------------------------

// out_k[c] = component k of the merge of the Q partial rows of channel c, in row order.
// A block covers FW = min(C, 8) channels with 256 / FW lanes each: lane p takes rows p,
// p + lanes, ..., then a tree over the lanes.
template <typename T, int K>
C10_HOST_DEVICE Sums<T, K> channel_lane(const Sums<T, K>* part, int64_t Q, int64_t C, int64_t c,
                                        int p, int lanes) {
  Sums<T, K> acc = Sums<T, K>::empty();
  for (int64_t r = p; r < Q; r += lanes) acc = Sums<T, K>::merge(acc, part[r * C + c]);
  return acc;
}

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    channel_final_kernel(const Sums<T, K>* __restrict__ part, int64_t Q, int64_t C,
                         T* __restrict__ out0, T* __restrict__ out1) {
  const int FW = static_cast<int>(C < 8 ? C : 8);
  const int lanes = kThreads / FW;
  const int t = static_cast<int>(threadIdx.x);
  const int p = t / FW;
  const int64_t c = int64_t{blockIdx.x} * FW + (t - p * FW);
  const Sums<T, K> mine =
      p < lanes && c < C ? channel_lane(part, Q, C, c, p, lanes) : Sums<T, K>::empty();
  const Sums<T, K> acc = merge_tree<Sums<T, K>, false>(mine, p, lanes, FW);
  if (p == 0 && c < C) {
    out0[c] = acc.v[0];
    if constexpr (K > 1) out1[c] = acc.v[1];
  }
}

template <typename T, int K>
void launch_channel_final(const Sums<T, K>* part, int64_t Q, int64_t C, T* out0, T* out1,
                          cudaStream_t stream) {
  const int64_t fw = std::min<int64_t>(C, 8);
  channel_final_kernel<T, K>
      <<<static_cast<unsigned>(ew::ceil_div(C, fw)), kThreads, 0, stream>>>(part, Q, C, out0, out1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- double backward --------------------------------------------------------------------

// The operands of the double backward's passes: ggx (when given), grad_out, out, x.
template <typename scalar_t, int W, bool kGgx>
struct DoubleTile;
template <typename scalar_t, int W>
struct DoubleTile<scalar_t, W, true> {
  Vec<scalar_t, W> gg, dy, y, x;
};
template <typename scalar_t, int W>
struct DoubleTile<scalar_t, W, false> {
  Vec<scalar_t, W> dy, y, x;
};

template <typename scalar_t, int W, bool kGgx>
C10_HOST_DEVICE inline DoubleTile<scalar_t, W, kGgx> load_double(
    const scalar_t* gg, const scalar_t* dy, const scalar_t* y, const scalar_t* x, int64_t i) {
  DoubleTile<scalar_t, W, kGgx> t;
  if constexpr (kGgx) t.gg = ew::load_vec<scalar_t, W>(gg, i);
  t.dy = ew::load_vec<scalar_t, W>(dy, i);
  t.y = ew::load_vec<scalar_t, W>(y, i);
  t.x = ew::load_vec<scalar_t, W>(x, i);
  return t;
}

template <typename T>
struct DoubleArgs {
  const T* mean;  // (N,)
  const T* rstd;
  Param weight, ggw, ggb;
  T slope;
  bool sums;          // K1 ran (ggx or ggw given)
  Sums<T, 7>* part;   // per block: S1, S2, SA, TA, SAG, SU, TU
  T* cpart;           // K2 with weight and ggx: sum p g per (n * S + s, c)
};

// K1: S1, S2 per thread; sum g, sum g xhat (and sum g ggx) per channel slot.
template <typename scalar_t, int W, bool kRows, bool kGgx>
struct DoubleSumsBody {
  using T = ew::opmath_t<scalar_t>;
  using Tile = DoubleTile<scalar_t, W, kGgx>;
  static constexpr int kRound = loads_per_round<Tile>();
  static constexpr int K = kRows ? W : 1;

  const scalar_t* __restrict__ gg;
  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  const scalar_t* __restrict__ x;
  T mean, rstd, slope;
  T s1, s2;
  T sg[K], sgx[K], sgg[K];

  C10_HOST_DEVICE Tile load(int64_t i) const {
    return load_double<scalar_t, W, kGgx>(gg, dy, y, x, i);
  }
  C10_HOST_DEVICE void use(const Tile& t, int64_t) {
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const int k = slot<kRows>(j);
      const T g = leaky_relu_grad(ew::to_op<T>(t.dy.val[j]), ew::to_op<T>(t.y.val[j]), slope);
      const T xhat = (ew::to_op<T>(t.x.val[j]) - mean) * rstd;
      sg[k] += g;
      sgx[k] += g * xhat;
      if constexpr (kGgx) {
        const T h = ew::to_op<T>(t.gg.val[j]);
        s1 += h;
        s2 += h * xhat;
        sgg[k] += g * h;
      }
    }
  }
};

// The thread's share of the seven sums: a = g w_c, u = g ggw_c summed as w_c sum g etc.
template <typename scalar_t, int W, bool kRows, bool kGgx>
C10_HOST_DEVICE Sums<ew::opmath_t<scalar_t>, 7> double_sums_thread(
    const Plan& pl, const Pos& q, const scalar_t* gg, const scalar_t* dy, const scalar_t* y,
    const scalar_t* x, const DoubleArgs<ew::opmath_t<scalar_t>>& f) {
  using T = ew::opmath_t<scalar_t>;
  using Body = DoubleSumsBody<scalar_t, W, kRows, kGgx>;
  constexpr int K = Body::K;
  Body body{gg, dy, y, x, f.mean[q.n], f.rstd[q.n], f.slope, T(0), T(0), {}, {}, {}};
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) body.sg[k] = body.sgx[k] = body.sgg[k] = T(0);
  walk_cells<kRows>(pl, q, body);
  T w[K], gw[K];
  load_slots(w, f.weight, q, T(1));
  load_slots(gw, f.ggw, q, T(0));
  Sums<T, 7> mine = Sums<T, 7>::empty();
  mine.v[kS1] = body.s1;
  mine.v[kS2] = body.s2;
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) {
    if constexpr (kGgx) {
      mine.v[kSA] += w[k] * body.sg[k];
      mine.v[kTA] += w[k] * body.sgx[k];
      mine.v[kSAG] += w[k] * body.sgg[k];
    }
    if (f.ggw.ptr != nullptr) {
      mine.v[kSU] += gw[k] * body.sg[k];
      mine.v[kTU] += gw[k] * body.sgx[k];
    }
  }
  return mine;
}

template <typename scalar_t, int W, bool kRows, bool kGgx>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    double_sums_kernel(const Plan pl, const scalar_t* __restrict__ gg,
                       const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                       const scalar_t* __restrict__ x, const DoubleArgs<ew::opmath_t<scalar_t>> f) {
  const Pos q = pos_of<kRows>(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const auto acc =
      merge_block(double_sums_thread<scalar_t, W, kRows, kGgx>(pl, q, gg, dy, y, x, f));
  if (threadIdx.x == 0) f.part[blockIdx.x] = acc;
}

// K2's per-sample coefficients (csrc/ops.cpp; sample_norm_dx in csrc/sample_norm_act_math.h).
template <typename T>
struct DoubleCoef {
  T mean, rstd;
  T m1, m2;    // S1 / M, S2 / M
  T ma, mta;   // SA / M, TA / M
  T mu, mtu;   // SU / M, TU / M
  T c_xhat, c_la, c_p;
};

template <typename T>
C10_HOST_DEVICE inline DoubleCoef<T> double_coef(const Sums<T, 7>& s, T mean, T rstd, int64_t M) {
  const auto m = static_cast<T>(M);
  DoubleCoef<T> c;
  c.mean = mean;
  c.rstd = rstd;
  c.m1 = s.v[kS1] / m;
  c.m2 = s.v[kS2] / m;
  c.ma = s.v[kSA] / m;
  c.mta = s.v[kTA] / m;
  c.mu = s.v[kSU] / m;
  c.mtu = s.v[kTU] / m;
  // -(rstd^2 / M) * (SAG - SA * S1 / M - TA * S2 / M), -(rstd / M) * S2, -(rstd / M) * TA
  c.c_xhat = -(rstd * rstd / m) * (s.v[kSAG] - s.v[kSA] * s.v[kS1] / m - s.v[kTA] * s.v[kS2] / m);
  c.c_la = -(rstd / m) * s.v[kS2];
  c.c_p = -(rstd / m) * s.v[kTA];
  return c;
}

// K2: d_grad_out = m (p w_c + ggw_c xhat + ggb_c), d_x = sample_norm_dx(...) + lu, in the
// oracle's order; sum p g per channel slot when kChannel. Without ggx its terms are left out;
// an absent ggw or ggb is read as zeros, so its terms add zeros: the oracle's values but for
// the sign of a zero, and NaN where x or grad_out is not finite (skipping the terms on a
// flag spilled under the 64-register cap).
template <typename scalar_t, int W, bool kRows, bool kGgx, bool kChannel>
struct DoubleApplyBody {
  using T = ew::opmath_t<scalar_t>;
  using Tile = DoubleTile<scalar_t, W, kGgx>;
  // Six streams: more than one tile a round spilled under the 64-register cap in the rows
  // walk (W channels' w_c, ggw_c, ggb_c and sum p g in registers) and in double, more than
  // two in the planes walk.
  static constexpr int kRound = kRows || sizeof(T) > 4 ? 1 : 2;
  static constexpr int K = kRows ? W : 1;

  const scalar_t* __restrict__ gg;
  const scalar_t* __restrict__ dy;
  const scalar_t* __restrict__ y;
  const scalar_t* __restrict__ x;
  scalar_t* __restrict__ d_go;
  scalar_t* __restrict__ d_x;
  DoubleCoef<T> c;
  T slope;
  T w[K], gw[K], gb[K];
  T spg[K];  // sum p g

  C10_HOST_DEVICE Tile load(int64_t i) const {
    return load_double<scalar_t, W, kGgx>(gg, dy, y, x, i);
  }
  C10_HOST_DEVICE void use(const Tile& t, int64_t i) {
    Vec<scalar_t, W> o_go, o_x;
    FASTGAN_UNROLL
    for (int j = 0; j < W; ++j) {
      const int k = slot<kRows>(j);
      const bool pos = ew::to_op<T>(t.y.val[j]) > T(0);
      const T g = leaky_relu_select(pos, ew::to_op<T>(t.dy.val[j]), slope);
      const T xhat = (ew::to_op<T>(t.x.val[j]) - c.mean) * c.rstd;
      T v = T(0);
      const T lu = sample_norm_l(g * gw[k], xhat, c.rstd, c.mu, c.mtu);
      T dxv = lu;
      if constexpr (kGgx) {
        const T p = sample_norm_l(ew::to_op<T>(t.gg.val[j]), xhat, c.rstd, c.m1, c.m2);
        const T la = sample_norm_l(g * w[k], xhat, c.rstd, c.ma, c.mta);
        v = v + p * w[k];
        dxv = sample_norm_dx(xhat, p, la, lu, c.c_xhat, c.c_la, c.c_p);
        if constexpr (kChannel) spg[k] += p * g;
      }
      v = v + gw[k] * xhat;
      v = v + gb[k];
      o_go.val[j] = static_cast<scalar_t>(leaky_relu_select(pos, v, slope));  // m * v
      o_x.val[j] = static_cast<scalar_t>(dxv);
    }
    ew::store_vec<scalar_t, W>(d_go, i, o_go);
    ew::store_vec<scalar_t, W>(d_x, i, o_x);
  }
};

// tot: the sample's seven sums. Returns the thread's sum p g per channel slot (kChannel).
template <typename scalar_t, int W, bool kRows, bool kGgx, bool kChannel>
C10_HOST_DEVICE Sums<ew::opmath_t<scalar_t>, (kRows ? W : 1)> double_apply_thread(
    const Plan& pl, const Pos& q, const scalar_t* gg, const scalar_t* dy, const scalar_t* y,
    const scalar_t* x, scalar_t* d_go, scalar_t* d_x, const Sums<ew::opmath_t<scalar_t>, 7>& tot,
    const DoubleArgs<ew::opmath_t<scalar_t>>& f) {
  using T = ew::opmath_t<scalar_t>;
  using Body = DoubleApplyBody<scalar_t, W, kRows, kGgx, kChannel>;
  constexpr int K = Body::K;
  Body body{gg, dy, y, x, d_go, d_x, double_coef(tot, f.mean[q.n], f.rstd[q.n], pl.M),
            f.slope, {}, {}, {}, {}};
  load_slots(body.w, f.weight, q, T(1));
  load_slots(body.gw, f.ggw, q, T(0));
  load_slots(body.gb, f.ggb, q, T(0));
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) body.spg[k] = T(0);
  walk_cells<kRows>(pl, q, body);
  Sums<T, K> ch;
  FASTGAN_UNROLL
  for (int k = 0; k < K; ++k) ch.v[k] = body.spg[k];
  return ch;
}

template <typename scalar_t, int W, bool kRows, bool kGgx, bool kChannel>
__global__ void __launch_bounds__(kThreads, ew::kBlocksPerSM)
    double_apply_kernel(const Plan pl, const scalar_t* __restrict__ gg,
                        const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                        const scalar_t* __restrict__ x, scalar_t* __restrict__ d_go,
                        scalar_t* __restrict__ d_x, const DoubleArgs<ew::opmath_t<scalar_t>> f) {
  using T = ew::opmath_t<scalar_t>;
  constexpr int K = kRows ? W : 1;
  const Pos q = pos_of<kRows>(pl, blockIdx.x, static_cast<int>(threadIdx.x));
  const Sums<T, 7> tot = f.sums ? merge_sample(f.part, q.n, pl.per_sample()) : Sums<T, 7>::empty();
  const Sums<T, K> ch = double_apply_thread<scalar_t, W, kRows, kGgx, kChannel>(
      pl, q, gg, dy, y, x, d_go, d_x, tot, f);
  if constexpr (kChannel) {
    const Sums<T, K> merged = merge_tree<Sums<T, K>, false>(ch, q.p, pl.L, q.stride);
    if (q.p == 0 && q.active) {
      T* row = f.cpart + channel_partial(pl, q);
      FASTGAN_UNROLL
      for (int k = 0; k < K; ++k) row[k] = merged.v[k];
    }
  }
}

// ---- host side --------------------------------------------------------------------------

bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

Param param_of(const std::optional<at::Tensor>& t) {
  if (!defined(t)) return Param{};
  return Param{t->const_data_ptr(), ew::float_dtype(t->scalar_type())};
}

// f(integral_constant W, bool_constant kRows) for the plan's unit and grid.
template <int V, typename F>
void with_grid(const Plan& pl, F&& f) {
  using One = std::integral_constant<int, 1>;
  using Vw = std::integral_constant<int, V>;
  if (pl.rows) {
    if (pl.W == V) {
      f(Vw{}, std::true_type{});
    } else {
      f(One{}, std::true_type{});
    }
  } else {
    if (pl.W == V) {
      f(Vw{}, std::false_type{});
    } else {
      f(One{}, std::false_type{});
    }
  }
}

// One byte tensor from the caching allocator: `a` bytes, then `b` bytes at a 16-byte
// boundary.
std::pair<unsigned char*, unsigned char*> workspace(at::Tensor& work, int64_t a, int64_t b,
                                                    const at::Tensor& like) {
  const int64_t head = ew::ceil_div(a, 16) * 16;
  work = at::empty({std::max<int64_t>(head + b, 1)}, like.options().dtype(at::kByte));
  auto* base = static_cast<unsigned char*>(work.mutable_data_ptr());
  return {base, base + head};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_norm_act_cuda(
    const at::Tensor& x, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, double eps, double negative_slope) {
  check_sample_norm_act(x, weight, bias, eps, negative_slope, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t N = x.size(0);
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor out = at::empty_like(x);  // x is dense: same strides
  at::Tensor mean = at::empty({N}, opts);
  at::Tensor rstd = at::empty({N}, opts);
  const int sms = ew::multiprocessor_count(x.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sample_norm_act",
                                  [&] {
    using T = ew::opmath_t<scalar_t>;
    constexpr int V = ew::kVec<scalar_t>;
    const auto* xp = x.const_data_ptr<scalar_t>();
    auto* yp = out.mutable_data_ptr<scalar_t>();
    const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {xp, yp});
    const Plan pl = plan_cells(x, sizeof(scalar_t), V, al.vec_ok && al.residue == 0, sms);
    at::Tensor work;
    auto* part = reinterpret_cast<Welford<T>*>(
        workspace(work, pl.blocks() * static_cast<int64_t>(sizeof(Welford<T>)), 0, x).first);
    ForwardArgs<T> f{part,
                     param_of(weight),
                     param_of(bias),
                     static_cast<T>(eps),  // rounded once to T, as the reference's Python scalar
                     static_cast<T>(negative_slope),
                     mean.mutable_data_ptr<T>(),
                     rstd.mutable_data_ptr<T>()};
    const auto blocks = static_cast<unsigned>(pl.blocks());
    with_grid<V>(pl, [&](auto w, auto rows) {
      constexpr int W = decltype(w)::value;
      constexpr bool kRows = decltype(rows)::value;
      stats_kernel<scalar_t, W, kRows><<<blocks, kThreads, 0, stream>>>(pl, xp, part);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      apply_kernel<scalar_t, W, kRows><<<blocks, kThreads, 0, stream>>>(pl, xp, yp, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_norm_act_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& x,
    const std::optional<at::Tensor>& weight, const at::Tensor& mean, const at::Tensor& rstd,
    double negative_slope, bool channel_grads) {
  check_sample_norm_act_backward(grad_out, out, x, weight, mean, rstd, negative_slope,
                                 c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t C = x.size(1);
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_weight = at::empty({channel_grads ? C : 0}, opts);
  at::Tensor grad_bias = at::empty({channel_grads ? C : 0}, opts);
  const int sms = ew::multiprocessor_count(x.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "sample_norm_act_backward", [&] {
    using T = ew::opmath_t<scalar_t>;
    constexpr int V = ew::kVec<scalar_t>;
    const auto* dy = grad_out.const_data_ptr<scalar_t>();
    const auto* yp = out.const_data_ptr<scalar_t>();
    const auto* xp = x.const_data_ptr<scalar_t>();
    auto* dx = grad_x.mutable_data_ptr<scalar_t>();
    const ew::Alignment al = ew::alignment_of(sizeof(scalar_t), {dy, yp, xp, dx});
    const Plan pl = plan_cells(x, 3 * sizeof(scalar_t), V, al.vec_ok && al.residue == 0, sms);
    at::Tensor work;
    const auto [head, tail] = workspace(
        work, pl.blocks() * static_cast<int64_t>(sizeof(Sums<T, 2>)),
        channel_grads ? pl.channel_rows() * C * static_cast<int64_t>(sizeof(Sums<T, 2>)) : 0, x);
    BackwardArgs<T> f{mean.const_data_ptr<T>(),
                      rstd.const_data_ptr<T>(),
                      param_of(weight),
                      static_cast<T>(negative_slope),
                      reinterpret_cast<Sums<T, 2>*>(head),
                      reinterpret_cast<Sums<T, 2>*>(tail)};
    const auto blocks = static_cast<unsigned>(pl.blocks());
    with_grid<V>(pl, [&](auto w, auto rows) {
      constexpr int W = decltype(w)::value;
      constexpr bool kRows = decltype(rows)::value;
      if (channel_grads) {
        grad_sums_kernel<scalar_t, W, kRows, true>
            <<<blocks, kThreads, 0, stream>>>(pl, dy, yp, xp, f);
      } else {
        grad_sums_kernel<scalar_t, W, kRows, false>
            <<<blocks, kThreads, 0, stream>>>(pl, dy, yp, xp, f);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      grad_x_kernel<scalar_t, W, kRows><<<blocks, kThreads, 0, stream>>>(pl, dy, yp, xp, dx, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (channel_grads) {
      // grad_weight = sum g xhat (component 0), grad_bias = sum g (component 1)
      launch_channel_final<T, 2>(f.cpart, pl.channel_rows(), C, grad_weight.mutable_data_ptr<T>(),
                                 grad_bias.mutable_data_ptr<T>(), stream);
    }
  });
  return {grad_x, grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_norm_act_double_backward_cuda(
    const std::optional<at::Tensor>& ggx, const std::optional<at::Tensor>& ggw,
    const std::optional<at::Tensor>& ggb, const at::Tensor& grad_out, const at::Tensor& out,
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& rstd, double negative_slope) {
  check_sample_norm_act_double_backward(ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd,
                                        negative_slope, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t C = x.size(1);
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  const bool has_ggx = defined(ggx);
  const bool has_ggw = defined(ggw);
  const bool has_w = defined(weight);
  const bool channel = has_w && has_ggx;  // d_weight = sum p g; zero without ggx
  at::Tensor d_go = at::empty_like(x);
  at::Tensor d_x = at::empty_like(x);
  at::Tensor d_w = !has_w   ? at::empty({0}, opts)
                   : channel ? at::empty({C}, opts)
                             : at::zeros({C}, opts);
  const int sms = ew::multiprocessor_count(x.get_device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "sample_norm_act_double_backward", [&] {
    using T = ew::opmath_t<scalar_t>;
    // 8-byte units: with 16-byte ones, the channels_last d_x pass (8 channels a thread, each
    // with w_c, ggw_c, ggb_c and a sum of p g) spilled under the 64-register cap.
    constexpr int V = ew::kVec<scalar_t> / 2;
    const scalar_t* gg = has_ggx ? ggx->const_data_ptr<scalar_t>() : nullptr;
    const auto* dy = grad_out.const_data_ptr<scalar_t>();
    const auto* yp = out.const_data_ptr<scalar_t>();
    const auto* xp = x.const_data_ptr<scalar_t>();
    auto* gop = d_go.mutable_data_ptr<scalar_t>();
    auto* dxp = d_x.mutable_data_ptr<scalar_t>();
    const ew::Alignment al =
        has_ggx ? ew::alignment_of(sizeof(scalar_t), {gg, dy, yp, xp, gop, dxp})
                : ew::alignment_of(sizeof(scalar_t), {dy, yp, xp, gop, dxp});
    const Plan pl = plan_cells(x, (has_ggx ? 4 : 3) * sizeof(scalar_t), V,
                               al.vec_ok && al.residue == 0, sms);
    const bool sums = has_ggx || has_ggw;
    at::Tensor work;
    const auto [head, tail] = workspace(
        work, sums ? pl.blocks() * static_cast<int64_t>(sizeof(Sums<T, 7>)) : 0,
        channel ? pl.channel_rows() * C * static_cast<int64_t>(sizeof(T)) : 0, x);
    DoubleArgs<T> f{mean.const_data_ptr<T>(),
                    rstd.const_data_ptr<T>(),
                    param_of(weight),
                    param_of(ggw),
                    param_of(ggb),
                    static_cast<T>(negative_slope),
                    sums,
                    reinterpret_cast<Sums<T, 7>*>(head),
                    reinterpret_cast<T*>(tail)};
    const auto blocks = static_cast<unsigned>(pl.blocks());
    with_grid<V>(pl, [&](auto w, auto rows) {
      constexpr int W = decltype(w)::value;
      constexpr bool kRows = decltype(rows)::value;
      if (has_ggx) {
        double_sums_kernel<scalar_t, W, kRows, true>
            <<<blocks, kThreads, 0, stream>>>(pl, gg, dy, yp, xp, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (channel) {
          double_apply_kernel<scalar_t, W, kRows, true, true>
              <<<blocks, kThreads, 0, stream>>>(pl, gg, dy, yp, xp, gop, dxp, f);
        } else {
          double_apply_kernel<scalar_t, W, kRows, true, false>
              <<<blocks, kThreads, 0, stream>>>(pl, gg, dy, yp, xp, gop, dxp, f);
        }
      } else {
        if (has_ggw) {
          double_sums_kernel<scalar_t, W, kRows, false>
              <<<blocks, kThreads, 0, stream>>>(pl, gg, dy, yp, xp, f);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        double_apply_kernel<scalar_t, W, kRows, false, false>
            <<<blocks, kThreads, 0, stream>>>(pl, gg, dy, yp, xp, gop, dxp, f);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    if (channel) {
      launch_channel_final<T, 1>(reinterpret_cast<const Sums<T, 1>*>(f.cpart), pl.channel_rows(), C,
                                 d_w.mutable_data_ptr<T>(), nullptr, stream);
    }
  });
  return {d_go, d_x, d_w};
}

}  // namespace
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan, CUDA, m) {
  m.impl("sample_norm_act", &fastgan::sample_norm_act_cuda);
  m.impl("sample_norm_act_backward", &fastgan::sample_norm_act_backward_cuda);
  m.impl("sample_norm_act_double_backward", &fastgan::sample_norm_act_double_backward_cuda);
}
