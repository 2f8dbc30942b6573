// Per-sample normalization + leaky ReLU on CPU tensors: the C++ backend of sample_norm_act,
// sample_norm_act_backward and sample_norm_act_double_backward (schemas and formulas:
// csrc/ops.cpp; checks and element math: csrc/sample_norm_act.h; the plain-PyTorch
// oracles: fastgan/ops/sample_norm_act.py).
//
// x is dense and every sample one contiguous range of M = numel / N elements; the channel
// of offset j within a sample is (j / run) % C, run = x.stride(1) (the whole sample when
// C = 1). Work is cut into parts, one at::parallel_for task each: a kSlice piece of one
// sample (M > kSlice), or kSlice / M whole samples. Every sum is kept per piece (per-sample
// sums) or per part (per-channel sums) and merged in piece / part order, so the bits
// depend on kSlice alone, never on the number of threads. Within a piece:
//  * planes (run >= kMinRun, NCHW from 8x8 up): runs of one channel, per-channel values
//    as scalars, sums in the lanes of the loop header;
//  * rows (channels_last, 2-D, small planes): per-channel values as patterns of a period
//    of the walk (a multiple of run * C, at most M); per-sample sums in lanes with the
//    channel factors (w_c, ggw_c) read from their patterns, per-channel sums into one
//    accumulator per pattern offset for the whole part, folded per channel at its end
//    (drain).
// Passes (each a parallel region over the parts):
//  forward          1. statistics: each piece, shifted by its sample's first value, two-pass
//                      (mean, then the sum of squared deviations with the compensation
//                      term) while in cache; a sample's pieces joined by Chan's merge, so
//                      x = 1000 + noise keeps its variance in float32.
//                   2. out = act((x - mean) * rstd * w_c + b_c).
//  backward         1. per sample s1 = sum g * w_c, s2 = sum g * w_c * xhat (planes: sum g
//                      and sum g * xhat per run, times w_c), and with channel_grads the
//                      per-part channel sums of g and g * xhat (grad_bias, grad_weight).
//                   2. grad_x = rstd * (g * w_c - s1 / M - xhat * s2 / M).
//  double backward  1. the seven per-sample sums S1, S2, SA, TA, SAG, SU, TU (planes: sums
//                      of ggx, ggx * xhat, g, g * xhat, g * ggx per run, times w_c or ggw_c).
//                   2. d_grad_out and d_x, and the per-part channel sums of p * g
//                      (d_weight), in one pass.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "../sample_norm_act.h"
#include "channel_values.h"
#include "sample_norm_act_loop.h"

namespace fastgan {
namespace {

// Elements per piece: 64 KiB of float32, cache-resident for the statistics' second pass.
constexpr int64_t kSlice = 16384;
// Elements per thread, at least (an OpenMP region costs ~us).
constexpr int64_t kMinPerThread = 32768;
// Runs of at least this many elements take the per-run loops (as batch_norm_act).
constexpr int64_t kMinRun = 64;
// Period of the rows path's patterns, at least (when the sample is that long).
constexpr int64_t kMinPeriod = 1024;

template <typename D>
SnActLoops loops_for() {
  return FASTGAN_PICK_ISA(&sn_act_loops<D>, &sn_act_loops_avx2<D>, &sn_act_loops_avx512<D>)();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Split {
  int64_t batch, m, run, channels;
  int64_t slices;  // pieces per sample (M > kSlice), else 1
  int64_t group;   // whole samples per part (M <= kSlice), else 1
  int64_t parts;
  int64_t period;  // rows: the patterns' period, a multiple of run * channels, at most M

  bool planes() const { return run >= kMinRun; }
  int64_t pieces() const { return batch * slices; }  // piece (n, q) at n * slices + q
  int64_t grain() const {
    return std::max<int64_t>(1, kMinPerThread / (slices > 1 ? kSlice : group * m));
  }
};

Split split_of(const at::Tensor& x) {
  Split s{};
  s.batch = x.size(0);
  s.m = x.numel() / s.batch;
  s.channels = x.size(1);
  s.run = s.channels == 1 ? s.m : x.stride(1);
  if (s.m > kSlice) {
    s.slices = ceil_div(s.m, kSlice);
    s.group = 1;
    s.parts = s.batch * s.slices;
  } else {
    s.slices = 1;
    s.group = kSlice / s.m;
    s.parts = ceil_div(s.batch, s.group);
  }
  const int64_t p = s.run * s.channels;  // divides M (x is dense, samples outermost)
  s.period = std::min(s.m, p * ceil_div(kMinPeriod, p));
  return s;
}

// f(sample n, slice q, offset in the sample, length) over the pieces of part k, in order.
template <typename F>
void for_each_piece(const Split& s, int64_t k, const F& f) {
  if (s.slices > 1) {
    const int64_t n = k / s.slices, q = k % s.slices, o = q * kSlice;
    f(n, q, o, std::min(kSlice, s.m - o));
    return;
  }
  const int64_t n1 = std::min(s.batch, (k + 1) * s.group);
  for (int64_t n = k * s.group; n < n1; ++n) f(n, int64_t{0}, int64_t{0}, s.m);
}

// f(offset in the sample, length, channel) over the runs of [o, o + len) (planes).
template <typename F>
void for_each_run(const Split& s, int64_t o, int64_t len, const F& f) {
  for (int64_t i = o, e = o + len; i < e;) {
    const int64_t l = std::min(e - i, s.run - i % s.run);
    f(i, l, (i / s.run) % s.channels);
    i += l;
  }
}

// f(first, end, channel) over the runs of pattern offsets [from, to), without a division
// per offset (channels_last: runs of 1).
template <typename F>
void for_each_slot_run(const Split& s, int64_t from, int64_t to, const F& f) {
  int64_t c = (from / s.run) % s.channels;
  for (int64_t j = from, e = from - from % s.run + s.run; j < to; j = e, e += s.run) {
    f(j, std::min(e, to), c);
    c = c + 1 == s.channels ? 0 : c + 1;
  }
}

// The pattern offsets a piece of len elements from offset phase touches: g(from, to), once
// or twice (a wrap).
template <typename G>
void touched(const Split& s, int64_t phase, int64_t len, const G& g) {
  if (len >= s.period) {
    g(int64_t{0}, s.period);
    return;
  }
  const int64_t e = phase + len;
  g(phase, std::min(e, s.period));
  if (e > s.period) g(int64_t{0}, e - s.period);
}

// The sum of a channel's run of n per-offset values, in four interleaved partial sums (a
// chain of n dependent adds per channel made the drain below cost more than the sums it
// drains on NCHW 4x4).
template <typename T>
T run_sum(const T* t, int64_t n) {
  T a[4] = {};
  int64_t r = 0;
  for (; r + 4 <= n; r += 4) {
    for (int l = 0; l < 4; ++l) a[l] += t[r + l];
  }
  for (int l = 0; r + l < n; ++l) a[l] += t[r + l];
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// The rows path's per-offset accumulators of part k (a period each), drained per channel
// and zeroed again: f(channel, sums) for each channel the part touched, in walk order,
// sums[q] = the sum of acc[q] over the channel's offsets. A period longer than the walk's,
// P = run * C, is first folded onto one (fold: K * P values, zero, left zero) by
// vectorizable adds; then each channel's run is summed (a call per offset cost more than
// the whole backward on channels_last, runs of 1).
template <typename T, int K, typename F>
void drain(const Split& s, int64_t k, T* const (&acc)[K], T* fold, const F& f) {
  const int64_t p = s.run * s.channels;
  // the part's one piece (M > kSlice), or whole samples
  const int64_t o = s.slices > 1 ? (k % s.slices) * kSlice : 0;
  const int64_t phase = o % s.period, len = s.slices > 1 ? std::min(kSlice, s.m - o) : s.m;
  const bool direct = s.period == p;
  const T* src[K];
  for (int q = 0; q < K; ++q) src[q] = direct ? acc[q] : fold + q * p;
  if (!direct) {
    touched(s, phase, len, [&](int64_t lo, int64_t hi) {
      for (int q = 0; q < K; ++q) {
        for (int64_t j = lo; j < hi;) {
          const int64_t r = j % p, l = std::min(hi - j, p - r);
          T* t = fold + q * p + r;
          const T* a = acc[q] + j;
          for (int64_t i = 0; i < l; ++i) t[i] += a[i];
          j += l;
        }
      }
    });
  }
  const int64_t span = std::min(len, s.period), first = phase / s.run;
  const int64_t nch = std::min(s.channels, (phase + span - 1) / s.run - first + 1);
  for (int64_t u = 0, c = first % s.channels; u < nch; ++u, c = c + 1 == s.channels ? 0 : c + 1) {
    T v[K];
    for (int q = 0; q < K; ++q) v[q] = s.run == 1 ? src[q][c] : run_sum(src[q] + c * s.run, s.run);
    f(c, static_cast<const T*>(v));
  }
  touched(s, phase, len, [&](int64_t lo, int64_t hi) {
    for (int q = 0; q < K; ++q) std::fill(acc[q] + lo, acc[q] + hi, T(0));
  });
  if (!direct) std::fill(fold, fold + K * p, T(0));
}

// v[(j / run) % channels] for j < period.
template <typename T>
std::vector<T> pattern(const std::vector<T>& v, const Split& s) {
  std::vector<T> p(s.period);
  for_each_slot_run(s, 0, s.period, [&](int64_t j0, int64_t j1, int64_t c) {
    std::fill(p.begin() + j0, p.begin() + j1, v[c]);
  });
  return p;
}

// out[c] = sum over the parts of partial[k * C + c], in part order.
template <typename T>
void merge_parts(const Split& s, const std::vector<T>& partial, T* out) {
  std::fill(out, out + s.channels, T(0));
  for (int64_t k = 0; k < s.parts; ++k) {
    for (int64_t c = 0; c < s.channels; ++c) out[c] += partial[k * s.channels + c];
  }
}

bool present(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// ---- forward -----------------------------------------------------------------------------

template <typename scalar_t, typename T>
void sample_moments(const SnActLoops& loops, const Split& s, const scalar_t* x, double eps, T* mean,
                    T* rstd) {
  std::vector<T> pm(s.pieces()), pm2(s.pieces());
  at::parallel_for(0, s.parts, s.grain(), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      for_each_piece(s, k, [&](int64_t n, int64_t q, int64_t o, int64_t len) {
        const scalar_t* xs = x + n * s.m;
        const T shift = static_cast<T>(xs[0]), count = static_cast<T>(len);
        const T m = static_cast<T>(loops.sum(xs + o, shift, len)) / count;
        double r[2];
        loops.sum_dev(xs + o, shift, m, len, r);
        const T sd = static_cast<T>(r[0]), sd2 = static_cast<T>(r[1]);
        pm[n * s.slices + q] = m + sd / count;
        pm2[n * s.slices + q] = std::max(sd2 - sd * sd / count, T(0));  // NaN stays NaN
      });
    }
  });
  // Chan et al.'s merge of each sample's pieces, in piece order.
  for (int64_t n = 0; n < s.batch; ++n) {
    const int64_t i0 = n * s.slices;
    T m = pm[i0], m2 = pm2[i0];
    int64_t na = std::min(kSlice, s.m);
    for (int64_t q = 1; q < s.slices; ++q) {
      const int64_t nb = std::min(kSlice, s.m - q * kSlice), nab = na + nb;
      const T fb = static_cast<T>(static_cast<double>(nb) / static_cast<double>(nab));
      const T fab = static_cast<T>(static_cast<double>(na) * static_cast<double>(nb) / static_cast<double>(nab));
      const T delta = pm[i0 + q] - m;
      m += delta * fb;
      m2 += pm2[i0 + q] + delta * delta * fab;
      na = nab;
    }
    mean[n] = static_cast<T>(x[n * s.m]) + m;
    rstd[n] = T(1) / std::sqrt(m2 / static_cast<T>(s.m) + static_cast<T>(eps));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_norm_act_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, double eps, double slope) {
  constexpr const char* op = "sample_norm_act";
  check_sample_norm_act(x, weight, bias, eps, slope, c10::DeviceType::CPU);
  const Split s = split_of(x);
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor out = at::empty_like(x), mean = at::empty({s.batch}, opts),
             rstd = at::empty({s.batch}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const SnActLoops loops = loops_for<D>();
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    auto* yp = static_cast<scalar_t*>(out.data_ptr());
    T* mp = mean.data_ptr<T>();
    T* rp = rstd.data_ptr<T>();
    sample_moments<scalar_t, T>(loops, s, xp, eps, mp, rp);

    const auto w = channel_values<T>(weight, s.channels, T(1));
    const auto b = channel_values<T>(bias, s.channels, T(0));
    std::vector<T> wpat, bpat;
    if (!s.planes()) {
      wpat = pattern(w, s);
      bpat = pattern(b, s);
    }
    const void* pats[kSnFwdChannel] = {wpat.data(), bpat.data()};
    at::parallel_for(0, s.parts, s.grain(), [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        for_each_piece(s, k, [&](int64_t n, int64_t, int64_t o, int64_t len) {
          const double sp[kSnFwdSample] = {mp[n], rp[n]};
          const int64_t base = n * s.m;
          if (s.planes()) {
            for_each_run(s, o, len, [&](int64_t i, int64_t l, int64_t c) {
              const double cp[kSnFwdChannel] = {w[c], b[c]};
              loops.fwd_run(xp + base + i, yp + base + i, sp, cp, slope, l);
            });
          } else {
            loops.fwd_periodic(xp + base + o, yp + base + o, sp, pats, s.period, o % s.period, slope, len);
          }
        });
      }
    });
  });
  return {out, mean, rstd};
}

// ---- backward ----------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_norm_act_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& x,
    const std::optional<at::Tensor>& weight, const at::Tensor& mean, const at::Tensor& rstd,
    double slope, bool channel_grads) {
  constexpr const char* op = "sample_norm_act_backward";
  check_sample_norm_act_backward(grad_out, out, x, weight, mean, rstd, slope, c10::DeviceType::CPU);
  const Split s = split_of(x);
  const int64_t channels = s.channels, nc = channel_grads ? channels : 0;
  at::Tensor grad_x = at::empty_like(x), grad_weight = at::empty({nc}, mean.options()),
             grad_bias = at::empty({nc}, mean.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const SnActLoops loops = loops_for<D>();
    const auto* dy = static_cast<const scalar_t*>(grad_out.data_ptr());
    const auto* yp = static_cast<const scalar_t*>(out.data_ptr());
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    auto* dx = static_cast<scalar_t*>(grad_x.data_ptr());
    const T* mp = mean.data_ptr<T>();
    const T* rp = rstd.data_ptr<T>();
    const auto w = channel_values<T>(weight, channels, T(1));

    const bool has_w = present(weight);
    const std::vector<T> wpat = s.planes() ? std::vector<T>() : pattern(w, s);
    const T* wp = has_w ? wpat.data() : nullptr;  // rows: grad_wsum's weights (none: 1)

    // Pass 1: s1, s2 per piece; sum g, sum g * xhat per part and channel.
    std::vector<T> ps1(s.pieces()), ps2(s.pieces());
    std::vector<T> cg(channel_grads ? s.parts * channels : 0), cgx(cg.size());
    at::parallel_for(0, s.parts, s.grain(), [&](int64_t begin, int64_t end) {
      // rows with channel_grads: the part's per-offset sums of g and g * xhat
      const int64_t part_rows = s.planes() || !channel_grads ? 0 : s.period;
      std::vector<T> pg(part_rows), pgx(part_rows), fold(part_rows ? 2 * s.run * channels : 0);
      for (int64_t k = begin; k < end; ++k) {
        T* cgk = channel_grads ? cg.data() + k * channels : nullptr;
        T* cgxk = channel_grads ? cgx.data() + k * channels : nullptr;
        for_each_piece(s, k, [&](int64_t n, int64_t q, int64_t o, int64_t len) {
          const int64_t base = n * s.m;
          T s1 = 0, s2 = 0;
          if (s.planes()) {
            for_each_run(s, o, len, [&](int64_t i, int64_t l, int64_t c) {
              double r[2];
              loops.grad_sum(dy + base + i, yp + base + i, xp + base + i, mp[n], rp[n], slope, l, r);
              const T g = static_cast<T>(r[0]), gx = static_cast<T>(r[1]);
              s1 += w[c] * g;
              s2 += w[c] * gx;
              if (cgk) {
                cgk[c] += g;
                cgxk[c] += gx;
              }
            });
          } else {
            const int64_t phase = o % s.period;
            double r[2];
            loops.grad_wsum(dy + base + o, yp + base + o, xp + base + o, mp[n], rp[n], slope, wp,
                            s.period, phase, len, r);
            s1 = static_cast<T>(r[0]);
            s2 = static_cast<T>(r[1]);
            if (part_rows) {
              loops.grad_slot_sum(dy + base + o, yp + base + o, xp + base + o, mp[n], rp[n], slope,
                                  s.period, phase, len, pg.data(), pgx.data());
            }
          }
          ps1[n * s.slices + q] = s1;
          ps2[n * s.slices + q] = s2;
        });
        if (part_rows) {
          T* const acc[2] = {pg.data(), pgx.data()};
          drain(s, k, acc, fold.data(), [&](int64_t c, const T* v) {
            cgk[c] += v[0];
            cgxk[c] += v[1];
          });
        }
      }
    });
    if (channel_grads) {
      merge_parts(s, cg, grad_bias.data_ptr<T>());
      merge_parts(s, cgx, grad_weight.data_ptr<T>());
    }
    std::vector<double> sp(s.batch * kSnBwdSample);
    const T count = static_cast<T>(s.m);
    for (int64_t n = 0; n < s.batch; ++n) {
      T s1 = 0, s2 = 0;
      for (int64_t q = 0; q < s.slices; ++q) {
        s1 += ps1[n * s.slices + q];
        s2 += ps2[n * s.slices + q];
      }
      double* p = sp.data() + n * kSnBwdSample;
      p[kSnBMean] = mp[n];
      p[kSnBRstd] = rp[n];
      p[kSnBMeanS] = s1 / count;
      p[kSnBMeanSx] = s2 / count;
    }

    // Pass 2: grad_x.
    at::parallel_for(0, s.parts, s.grain(), [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        for_each_piece(s, k, [&](int64_t n, int64_t, int64_t o, int64_t len) {
          const int64_t base = n * s.m;
          const double* p = sp.data() + n * kSnBwdSample;
          if (s.planes()) {
            for_each_run(s, o, len, [&](int64_t i, int64_t l, int64_t c) {
              loops.grad_run(dy + base + i, yp + base + i, xp + base + i, dx + base + i, p, w[c], slope, l);
            });
          } else {
            loops.grad_periodic(dy + base + o, yp + base + o, xp + base + o, dx + base + o, p,
                                wpat.data(), s.period, o % s.period, slope, len);
          }
        });
      }
    });
  });
  return {grad_x, grad_weight, grad_bias};
}

// ---- double backward ---------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_norm_act_double_backward_cpu(
    const std::optional<at::Tensor>& ggx, const std::optional<at::Tensor>& ggw,
    const std::optional<at::Tensor>& ggb, const at::Tensor& grad_out, const at::Tensor& out,
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& mean,
    const at::Tensor& rstd, double slope) {
  constexpr const char* op = "sample_norm_act_double_backward";
  check_sample_norm_act_double_backward(ggx, ggw, ggb, grad_out, out, x, weight, mean, rstd, slope,
                                        c10::DeviceType::CPU);
  const Split s = split_of(x);
  const int64_t channels = s.channels;
  const bool has_ggx = present(ggx), has_w = present(weight);
  at::Tensor d_grad_out = at::empty_like(x), d_x = at::empty_like(x);
  at::Tensor d_weight = !has_w ? at::empty({0}, mean.options())
                        : has_ggx ? at::empty({channels}, mean.options())
                                  : at::zeros({channels}, mean.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const SnActLoops loops = loops_for<D>();
    const auto* gg = has_ggx ? static_cast<const scalar_t*>(ggx->data_ptr()) : nullptr;
    const auto* dy = static_cast<const scalar_t*>(grad_out.data_ptr());
    const auto* yp = static_cast<const scalar_t*>(out.data_ptr());
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    auto* dgo = static_cast<scalar_t*>(d_grad_out.data_ptr());
    auto* dxp = static_cast<scalar_t*>(d_x.data_ptr());
    const T* mp = mean.data_ptr<T>();
    const T* rp = rstd.data_ptr<T>();
    const auto w = channel_values<T>(weight, channels, T(1));
    const auto gw = channel_values<T>(ggw, channels, T(0));
    const auto gb = channel_values<T>(ggb, channels, T(0));

    std::vector<T> wpat, gwpat, gbpat;
    if (!s.planes()) {
      wpat = pattern(w, s);
      gwpat = pattern(gw, s);
      gbpat = pattern(gb, s);
    }
    const void* pats[kSnDdChannel] = {wpat.data(), gwpat.data(), gbpat.data()};

    // Pass 1: the seven per-sample sums, per piece.
    std::vector<T> ps(s.pieces() * kSnDdWSums);
    at::parallel_for(0, s.parts, s.grain(), [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        for_each_piece(s, k, [&](int64_t n, int64_t q, int64_t o, int64_t len) {
          const int64_t base = n * s.m;
          T* r = ps.data() + (n * s.slices + q) * kSnDdWSums;
          if (!s.planes()) {
            double d[kSnDdWSums];
            loops.dd_wsum(has_ggx ? gg + base + o : nullptr, dy + base + o, yp + base + o, xp + base + o,
                          mp[n], rp[n], slope, pats, s.period, o % s.period, len, d);
            for (int j = 0; j < kSnDdWSums; ++j) r[j] = static_cast<T>(d[j]);
            return;
          }
          std::fill(r, r + kSnDdWSums, T(0));
          for_each_run(s, o, len, [&](int64_t i, int64_t l, int64_t c) {
            double d[kSnDdSums] = {};  // ggx's three zero without ggx
            if (has_ggx) {
              loops.dd_sum(gg + base + i, dy + base + i, yp + base + i, xp + base + i, mp[n], rp[n],
                           slope, l, d);
            } else {
              loops.grad_sum(dy + base + i, yp + base + i, xp + base + i, mp[n], rp[n], slope, l,
                             d + kSnSumG);
            }
            T v[kSnDdSums];
            for (int j = 0; j < kSnDdSums; ++j) v[j] = static_cast<T>(d[j]);
            r[kSnS1] += v[kSnSumGgx];
            r[kSnS2] += v[kSnSumGgxXhat];
            r[kSnSA] += w[c] * v[kSnSumG];
            r[kSnTA] += w[c] * v[kSnSumGXhat];
            r[kSnSAG] += w[c] * v[kSnSumGGgx];
            r[kSnSU] += gw[c] * v[kSnSumG];
            r[kSnTU] += gw[c] * v[kSnSumGXhat];
          });
        });
      }
    });
    std::vector<double> sp(s.batch * kSnDdSample);
    const T count = static_cast<T>(s.m);
    for (int64_t n = 0; n < s.batch; ++n) {
      T t[kSnDdWSums] = {};
      for (int64_t q = 0; q < s.slices; ++q) {
        const T* r = ps.data() + (n * s.slices + q) * kSnDdWSums;
        for (int j = 0; j < kSnDdWSums; ++j) t[j] += r[j];
      }
      const T r = rp[n];
      double* p = sp.data() + n * kSnDdSample;
      p[kSnDMean] = mp[n];
      p[kSnDRstd] = r;
      p[kSnDMeanS1] = t[kSnS1] / count;
      p[kSnDMeanS2] = t[kSnS2] / count;
      p[kSnDMeanSA] = t[kSnSA] / count;
      p[kSnDMeanTA] = t[kSnTA] / count;
      p[kSnDMeanSU] = t[kSnSU] / count;
      p[kSnDMeanTU] = t[kSnTU] / count;
      // d_x = -(r^2 / M) (SAG - SA S1 / M - TA S2 / M) xhat - (r / M) (S2 la + TA p) + lu
      p[kSnDCXhat] = -(r * r / count) * (t[kSnSAG] - t[kSnSA] * t[kSnS1] / count - t[kSnTA] * t[kSnS2] / count);
      p[kSnDCLa] = -(r / count) * t[kSnS2];
      p[kSnDCP] = -(r / count) * t[kSnTA];
    }

    // Pass 2: d_grad_out, d_x; sum p * g per part and channel (d_weight).
    const bool want_dw = has_ggx && has_w;
    std::vector<T> cdw(want_dw ? s.parts * channels : 0);
    at::parallel_for(0, s.parts, s.grain(), [&](int64_t begin, int64_t end) {
      // rows: the part's per-offset sums of p * g
      const bool part_rows = !s.planes() && has_ggx;
      std::vector<T> acc_v(part_rows ? s.period : 0), fold(part_rows ? s.run * channels : 0);
      T* const acc[1] = {acc_v.data()};
      for (int64_t k = begin; k < end; ++k) {
        T* cdwk = want_dw ? cdw.data() + k * channels : nullptr;
        for_each_piece(s, k, [&](int64_t n, int64_t, int64_t o, int64_t len) {
          const int64_t base = n * s.m;
          const double* p = sp.data() + n * kSnDdSample;
          const scalar_t* ggs = has_ggx ? gg + base : nullptr;
          if (s.planes()) {
            for_each_run(s, o, len, [&](int64_t i, int64_t l, int64_t c) {
              const double cp[kSnDdChannel] = {w[c], gw[c], gb[c]};
              const double pg = loops.dd_run(ggs ? ggs + i : nullptr, dy + base + i, yp + base + i,
                                             xp + base + i, dgo + base + i, dxp + base + i, p, cp, slope, l);
              if (cdwk) cdwk[c] += static_cast<T>(pg);
            });
            return;
          }
          loops.dd_periodic(ggs ? ggs + o : nullptr, dy + base + o, yp + base + o, xp + base + o,
                            dgo + base + o, dxp + base + o, p, pats, s.period, o % s.period, slope,
                            len, acc_v.data());
        });
        if (part_rows) {
          drain(s, k, acc, fold.data(), [&](int64_t c, const T* v) {
            if (cdwk) cdwk[c] += v[0];
          });
        }
      }
    });
    if (want_dw) merge_parts(s, cdw, d_weight.data_ptr<T>());
  });
  return {d_grad_out, d_x, d_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("sample_norm_act", &sample_norm_act_cpu);
  m.impl("sample_norm_act_backward", &sample_norm_act_backward_cpu);
  m.impl("sample_norm_act_double_backward", &sample_norm_act_double_backward_cpu);
}

}  // namespace fastgan
