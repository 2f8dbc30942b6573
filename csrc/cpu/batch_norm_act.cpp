// BatchNorm + leaky ReLU on CPU tensors: the C++ backend of batch_norm_act and
// batch_norm_act_backward (schemas and semantics: csrc/ops.cpp; element math:
// csrc/batch_norm_act_math.h, shared with the CUDA kernels).
//
// x is dense; the channel of memory offset i is (i / run) % C, run = x.stride(1) (the whole
// tensor when C = 1). Per-channel reductions are cut into parts of about kSlice elements,
// one at::parallel_for task each, and a channel's parts are merged in part order, so the
// bits depend on kSlice alone, never on the number of threads:
//  * planes (run >= kMinRun, NCHW from 8x8 up): a part is a few whole planes of one channel
//    (or a kSlice piece of one large plane), reduced by the lane sums of the loop header;
//  * rows (channels_last, 2-D, small planes): a part is a block of rows of the walk's
//    period P = run * C (all channels, or a block of channels when one row exceeds kSlice),
//    reduced column by column into one accumulator per offset, then folded per channel.
// Statistics: on data shifted by a value of their channel (its first), each part is
// two-pass (mean, then sum of squared deviations with the compensation term) while its
// data sit in cache, and parts are combined by Chan's merge, so x = 1000 + noise keeps its
// variance in float32. The backward's sums (sum g,
// sum g * xhat) are plain sums in the same parts. Element passes are split in kChunk
// ranges: constant per-channel values per run (planes), or a periodic pattern of them.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "../batch_norm_act.h"
#include "channel_values.h"
#include "batch_norm_act_loop.h"

namespace fastgan {
namespace {

// Elements per reduction part: 64 KiB of float32, cache-resident for the second pass.
constexpr int64_t kSlice = 16384;
// Elements per task of the element passes (as bias_leaky_relu), and per thread at least.
constexpr int64_t kChunk = 32768;
constexpr int64_t kMinPerThread = 32768;
// Runs of at least this many elements take the per-run loops (as bias_leaky_relu).
constexpr int64_t kMinRun = 64;
// Period of the element passes' patterns, at least.
constexpr int64_t kMinPeriod = 1024;
// Width of the rows path's accumulators, at least (short periods: rows grouped).
constexpr int64_t kMinWidth = 256;

template <typename D>
BnActLoops loops_for() {
  return FASTGAN_PICK_ISA(&bn_act_loops<D>, &bn_act_loops_avx2<D>, &bn_act_loops_avx512<D>)();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The channel walk of x and how its per-channel reductions are cut.
struct Split {
  int64_t numel, run, channels, outer;  // outer = numel / period
  int64_t per_channel, tasks;           // parts per channel (merged in order), tasks
                                        // (partials: channel-major, C * per_channel)
  // planes: part t of channel c is task c * per_channel + t
  int64_t pieces, planes_per_part;  // pieces of a plane (run > kSlice), else planes per part
  // rows: task = (row block rb, channel block cb) = rb * blocks + cb
  int64_t rows_per_part, channels_per_block, blocks;
  int64_t group;  // rows summed as one super-row (blocks == 1)

  int64_t period() const { return run * channels; }
  bool planes() const { return run >= kMinRun; }
  int64_t n() const { return numel / channels; }  // elements per channel
  // Accumulator slots of a rows task; slot j belongs to its block's channel (j / run) % nch.
  int64_t slots() const { return blocks == 1 ? group * period() : channels_per_block * run; }
  // Tasks per thread, at least: kMinPerThread elements (an OpenMP region costs ~us).
  int64_t grain() const { return std::max<int64_t>(1, tasks * kMinPerThread / numel); }
};

Split split_of(const at::Tensor& x) {
  Split s{};
  s.numel = x.numel();
  s.channels = x.size(1);
  s.run = s.channels == 1 ? s.numel : x.stride(1);
  s.outer = s.numel / s.period();
  if (s.planes()) {
    if (s.run > kSlice) {
      s.pieces = ceil_div(s.run, kSlice);
      s.planes_per_part = 1;
      s.per_channel = s.outer * s.pieces;
    } else {
      s.pieces = 1;
      s.planes_per_part = std::max<int64_t>(1, kSlice / s.run);
      s.per_channel = ceil_div(s.outer, s.planes_per_part);
    }
    s.tasks = s.channels * s.per_channel;
  } else {
    const int64_t p = s.period();
    s.channels_per_block =
        p <= kSlice ? s.channels
                    : std::clamp<int64_t>(std::max(kMinWidth, kSlice / s.outer) / s.run, 1, s.channels);
    s.blocks = ceil_div(s.channels, s.channels_per_block);
    s.rows_per_part = std::max<int64_t>(1, kSlice / (s.channels_per_block * s.run));
    s.per_channel = ceil_div(s.outer, s.rows_per_part);
    s.tasks = s.per_channel * s.blocks;
    s.group = s.blocks == 1 ? ceil_div(kMinWidth, p) : 1;
  }
  return s;
}

// f(offset, length) over the contiguous ranges of planes task k (channel k / per_channel).
template <typename F>
void plane_ranges(const Split& s, int64_t k, const F& f) {
  const int64_t c = k / s.per_channel, t = k % s.per_channel;
  if (s.pieces > 1) {
    const int64_t o = t / s.pieces, q = t % s.pieces;
    f(o * s.period() + c * s.run + q * kSlice, std::min(kSlice, s.run - q * kSlice));
    return;
  }
  const int64_t o1 = std::min(s.outer, (t + 1) * s.planes_per_part);
  for (int64_t o = t * s.planes_per_part; o < o1; ++o) f(o * s.period() + c * s.run, s.run);
}

// A rows task: rows [r0, r0 + rows) of channels [c0, c0 + nch); part rb of each channel.
struct Block {
  int64_t rb, r0, rows, c0, nch;
};

Block block_of(const Split& s, int64_t k) {
  const int64_t rb = k / s.blocks, cb = k % s.blocks;
  const int64_t r0 = rb * s.rows_per_part, c0 = cb * s.channels_per_block;
  return {rb, r0, std::min(s.rows_per_part, s.outer - r0), c0,
          std::min(s.channels_per_block, s.channels - c0)};
}

// col(offset, stride, rows, width) over the block, as column sums into s.slots() slots.
template <typename F>
void block_cols(const Split& s, const Block& b, const F& col) {
  const int64_t p = s.period(), base = b.r0 * p + b.c0 * s.run;
  if (s.blocks > 1) {
    col(base, p, b.rows, b.nch * s.run);
    return;
  }
  const int64_t len = b.rows * p, width = s.group * p, full = len / width, rem = len % width;
  if (full > 0) col(base, width, full, width);
  if (rem > 0) col(base + full * width, width, 1, rem);
}

// f(first slot, channel) for each run of slots [0, length), channels cycling through
// [0, channels): slot j belongs to channel (j / run) % channels, without a division per slot
// (those took most of the forward's 0.4 ms on (256, 1024) float32).
template <typename F>
void for_each_slot_run(int64_t run, int64_t channels, int64_t length, const F& f) {
  for (int64_t j = 0, c = 0; j < length; j += run, c = c + 1 == channels ? 0 : c + 1) f(j, c);
}

// Per-slot values folded per channel of the block, in slot order: out[lc] += acc[j].
template <typename T>
void fold(const Split& s, const Block& b, const std::vector<T>& acc, std::vector<T>& out) {
  std::fill(out.begin(), out.begin() + b.nch, T(0));
  const int64_t len = static_cast<int64_t>(acc.size());
  for_each_slot_run(s.run, b.nch, len, [&](int64_t j, int64_t c) {
    for (int64_t u = j; u < std::min(len, j + s.run); ++u) out[c] += acc[u];
  });
}

// v[(j / run) % channels] for j < length into p.
template <typename T>
void lay_out(const T* v, int64_t run, int64_t channels, std::vector<T>& p) {
  const int64_t len = static_cast<int64_t>(p.size());
  for_each_slot_run(run, channels, len, [&](int64_t j, int64_t c) {
    std::fill(p.begin() + j, p.begin() + std::min(len, j + run), v[c]);
  });
}

// v[(j / run) % channels] laid out for j < length (offset j of the walk, from channel 0).
template <typename T>
std::vector<T> pattern(const T* v, const Split& s, int64_t length) {
  std::vector<T> p(length);
  lay_out(v, s.run, s.channels, p);
  return p;
}

// (count, mean, M2) of the parts: count[t] (part t has as many elements in every channel),
// mean and M2 channel-major, [c * per_channel + t].
template <typename T>
struct Moments {
  std::vector<int64_t> count;
  std::vector<T> mean, m2;
  Moments(int64_t channels, int64_t per_channel)
      : count(per_channel), mean(channels * per_channel), m2(channels * per_channel) {}
};

template <typename scalar_t, typename T>
void batch_moments(const BnActLoops& loops, const Split& s, const scalar_t* x, T* mean_out,
                   T* var_out) {
  Moments<T> parts(s.channels, s.per_channel);
  const int64_t kc = s.per_channel;
  // Each channel's data shifted by its first value: part means near 0, so the merges keep
  // the precision of the deviations (x = 1000 + noise, float32).
  std::vector<T> shift(s.channels);
  for (int64_t c = 0; c < s.channels; ++c) shift[c] = static_cast<T>(x[c * s.run]);
  std::vector<T> kpat;  // rows: the shift of every slot (block offset c0 * run)
  if (!s.planes()) kpat = pattern(shift.data(), s, s.blocks == 1 ? s.slots() : s.period());
  at::parallel_for(0, s.tasks, s.grain(), [&](int64_t begin, int64_t end) {
    if (s.planes()) {
      for (int64_t k = begin; k < end; ++k) {
        const T shift_c = shift[k / kc];
        int64_t count = 0;
        T sum = 0;
        plane_ranges(s, k, [&](int64_t off, int64_t len) {
          sum += static_cast<T>(loops.sum(x + off, shift_c, len));
          count += len;
        });
        const T m = sum / static_cast<T>(count);
        T sd = 0, sd2 = 0;
        plane_ranges(s, k, [&](int64_t off, int64_t len) {
          double r[2];
          loops.sum_dev(x + off, shift_c, m, len, r);
          sd += static_cast<T>(r[0]);
          sd2 += static_cast<T>(r[1]);
        });
        if (k < kc) parts.count[k] = count;  // channel 0's parts: the same in every channel
        parts.mean[k] = m + sd / static_cast<T>(count);
        parts.m2[k] = std::max(sd2 - sd * sd / static_cast<T>(count), T(0));  // NaN stays NaN
      }
      return;
    }
    std::vector<T> acc(s.slots()), acc2(s.slots()), mpat(s.slots());
    std::vector<T> per(s.channels_per_block), sdc(s.channels_per_block), per2(s.channels_per_block);
    for (int64_t k = begin; k < end; ++k) {
      const Block b = block_of(s, k);
      const T count = static_cast<T>(b.rows * s.run);
      const T* kp = kpat.data() + b.c0 * s.run;
      std::fill(acc.begin(), acc.end(), T(0));
      block_cols(s, b, [&](int64_t off, int64_t stride, int64_t rows, int64_t width) {
        loops.col_sum(x + off, stride, rows, width, kp, acc.data());
      });
      fold(s, b, acc, per);
      for (int64_t lc = 0; lc < b.nch; ++lc) per[lc] /= count;  // the part's means
      lay_out(per.data(), s.run, b.nch, mpat);
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(acc2.begin(), acc2.end(), T(0));
      block_cols(s, b, [&](int64_t off, int64_t stride, int64_t rows, int64_t width) {
        loops.col_sum_dev(x + off, stride, rows, width, kp, mpat.data(), acc.data(), acc2.data());
      });
      if (b.c0 == 0) parts.count[b.rb] = b.rows * s.run;
      fold(s, b, acc, sdc);
      fold(s, b, acc2, per2);
      for (int64_t lc = 0; lc < b.nch; ++lc) {
        const int64_t i = (b.c0 + lc) * kc + b.rb;
        parts.mean[i] = per[lc] + sdc[lc] / count;
        parts.m2[i] = std::max(per2[lc] - sdc[lc] * sdc[lc] / count, T(0));  // NaN stays NaN
      }
    }
  });
  // Chan et al.'s merge of each channel's parts, in part order; the coefficients depend on
  // the counts alone, the same in every channel, so the merges are multiplies over channels.
  std::vector<T> m(s.channels), m2(s.channels);
  for (int64_t c = 0; c < s.channels; ++c) {
    m[c] = parts.mean[c * kc];
    m2[c] = parts.m2[c * kc];
  }
  int64_t n = parts.count[0];
  for (int64_t t = 1; t < kc; ++t) {
    const int64_t nb = parts.count[t], nab = n + nb;
    const T fb = static_cast<T>(static_cast<double>(nb) / static_cast<double>(nab));
    const T fab = static_cast<T>(static_cast<double>(n) * static_cast<double>(nb) / static_cast<double>(nab));
    for (int64_t c = 0; c < s.channels; ++c) {
      const T delta = parts.mean[c * kc + t] - m[c];
      m[c] += delta * fb;
      m2[c] += parts.m2[c * kc + t] + delta * delta * fab;
    }
    n = nab;
  }
  for (int64_t c = 0; c < s.channels; ++c) {
    mean_out[c] = shift[c] + m[c];
    var_out[c] = m2[c] / static_cast<T>(n);
  }
}

// r = (1 - momentum) * r + momentum * v in r's own dtype (its opmath type), in place.
void update_running(at::Tensor& r, const std::vector<double>& v, double momentum) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "batch_norm_act", [&] {
    using O = at::opmath_type<scalar_t>;
    auto* p = r.data_ptr<scalar_t>();
    const O m = static_cast<O>(momentum), keep = O(1) - m;
    for (size_t c = 0; c < v.size(); ++c) {
      p[c] = static_cast<scalar_t>(keep * static_cast<O>(p[c]) + m * static_cast<O>(v[c]));
    }
  });
}

// f(offset, length, channel) over the runs of [0, numel), or g(offset, length) over plain
// ranges when runs are short; kChunk ranges in parallel.
template <typename FRun, typename FRange>
void for_each_element_range(const Split& s, const FRun& f, const FRange& g) {
  at::parallel_for(0, s.numel, kChunk, [&](int64_t begin, int64_t end) {
    if (!s.planes()) {
      g(begin, end - begin);
      return;
    }
    for (int64_t i = begin; i < end;) {
      const int64_t len = std::min(end - i, s.run - i % s.run);
      f(i, len, (i / s.run) % s.channels);
      i += len;
    }
  });
}

int64_t pattern_period(const Split& s) {
  return s.period() * ceil_div(kMinPeriod, s.period());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, bool use_batch_stats, double momentum,
    double eps, double slope) {
  constexpr const char* op = "batch_norm_act";
  check_batch_norm_act(x, weight, bias, running_mean, running_var, use_batch_stats, momentum, eps,
                       slope, c10::DeviceType::CPU);
  const Split s = split_of(x);
  const int64_t channels = s.channels;
  const auto opts = x.options().dtype(compute_dtype(x.scalar_type()));
  at::Tensor out = at::empty_like(x), mean = at::empty({channels}, opts),
             invstd = at::empty({channels}, opts);
  const bool has_running = running_mean.has_value() && running_mean->defined();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const BnActLoops loops = loops_for<D>();
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    T* mp = mean.data_ptr<T>();
    T* ip = invstd.data_ptr<T>();
    std::vector<T> var(channels);
    if (use_batch_stats) {
      batch_moments<scalar_t, T>(loops, s, xp, mp, var.data());
      if (has_running) {
        // n / (n - 1) rounded once to T, as the CUDA kernel and the reference do
        const T unbias = static_cast<T>(static_cast<double>(s.n()) / static_cast<double>(s.n() - 1));
        std::vector<double> um(channels), uv(channels);
        for (int64_t c = 0; c < channels; ++c) {
          um[c] = mp[c];
          uv[c] = var[c] * unbias;  // the unbiased variance, in T
        }
        at::Tensor rm = *running_mean, rv = *running_var;
        update_running(rm, um, momentum);
        update_running(rv, uv, momentum);
      }
    } else {
      const auto rm = channel_values<T>(running_mean, channels, T(0));
      var = channel_values<T>(running_var, channels, T(1));
      std::copy(rm.begin(), rm.end(), mp);
    }
    const auto w = channel_values<T>(weight, channels, T(1));
    const auto shift = channel_values<T>(bias, channels, T(0));
    std::vector<T> scale(channels);
    for (int64_t c = 0; c < channels; ++c) {
      ip[c] = T(1) / std::sqrt(var[c] + static_cast<T>(eps));
      scale[c] = w[c] * ip[c];
    }
    auto* yp = static_cast<scalar_t*>(out.data_ptr());
    const int64_t period = s.planes() ? 0 : pattern_period(s);
    std::vector<T> pm, ps, pb;
    if (!s.planes()) {
      pm = pattern(mp, s, period);
      ps = pattern(scale.data(), s, period);
      pb = pattern(shift.data(), s, period);
    }
    const void* pats[kFwdParams] = {pm.data(), ps.data(), pb.data()};
    for_each_element_range(
        s,
        [&](int64_t i, int64_t len, int64_t c) {
          const double p[kFwdParams] = {mp[c], scale[c], shift[c]};
          loops.channel(xp + i, yp + i, p, slope, len);
        },
        [&](int64_t i, int64_t len) {
          loops.periodic(xp + i, yp + i, pats, period, i % period, slope, len);
        });
  });
  return {out, mean, invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_act_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& x,
    const std::optional<at::Tensor>& weight, const at::Tensor& mean, const at::Tensor& invstd,
    bool use_batch_stats, double slope) {
  constexpr const char* op = "batch_norm_act_backward";
  check_batch_norm_act_backward(grad_out, out, x, weight, mean, invstd, slope, c10::DeviceType::CPU);
  const Split s = split_of(x);
  const int64_t channels = s.channels, kc = s.per_channel;
  at::Tensor grad_x = at::empty_like(x), grad_weight = at::empty({channels}, mean.options()),
             grad_bias = at::empty({channels}, mean.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    using D = elem_of<scalar_t, c10::Half, c10::BFloat16>;
    using T = typename Elem<D>::T;
    const BnActLoops loops = loops_for<D>();
    const auto* dy = static_cast<const scalar_t*>(grad_out.data_ptr());
    const auto* yp = static_cast<const scalar_t*>(out.data_ptr());
    const auto* xp = static_cast<const scalar_t*>(x.data_ptr());
    auto* dx = static_cast<scalar_t*>(grad_x.data_ptr());
    const T* mp = mean.data_ptr<T>();
    const T* ip = invstd.data_ptr<T>();

    // Pass 1: sum g and sum g * xhat per part, then per channel in part order.
    std::vector<T> sg(channels * kc), sgx(channels * kc);
    std::vector<T> mpat, ipat;  // rows: mean, invstd of every slot (block offset c0 * run)
    if (!s.planes()) {
      const int64_t len = s.blocks == 1 ? s.slots() : s.period();
      mpat = pattern(mp, s, len);
      ipat = pattern(ip, s, len);
    }
    at::parallel_for(0, s.tasks, s.grain(), [&](int64_t begin, int64_t end) {
      if (s.planes()) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t c = k / kc;
          T a = 0, b = 0;
          plane_ranges(s, k, [&](int64_t off, int64_t len) {
            double r[2];
            loops.grad_sum(dy + off, yp + off, xp + off, mp[c], ip[c], slope, len, r);
            a += static_cast<T>(r[0]);
            b += static_cast<T>(r[1]);
          });
          sg[k] = a;
          sgx[k] = b;
        }
        return;
      }
      std::vector<T> ag(s.slots()), agx(s.slots()), per(s.channels_per_block),
          per2(s.channels_per_block);
      for (int64_t k = begin; k < end; ++k) {
        const Block b = block_of(s, k);
        std::fill(ag.begin(), ag.end(), T(0));
        std::fill(agx.begin(), agx.end(), T(0));
        const int64_t po = b.c0 * s.run;
        block_cols(s, b, [&](int64_t off, int64_t stride, int64_t rows, int64_t width) {
          loops.grad_col_sum(dy + off, yp + off, xp + off, stride, rows, width, mpat.data() + po,
                             ipat.data() + po, slope, ag.data(), agx.data());
        });
        fold(s, b, ag, per);
        fold(s, b, agx, per2);
        for (int64_t lc = 0; lc < b.nch; ++lc) {
          sg[(b.c0 + lc) * kc + b.rb] = per[lc];
          sgx[(b.c0 + lc) * kc + b.rb] = per2[lc];
        }
      }
    });
    T* gw = grad_weight.data_ptr<T>();
    T* gb = grad_bias.data_ptr<T>();
    const auto w = channel_values<T>(weight, channels, T(1));
    const T n = static_cast<T>(s.n());
    std::vector<T> scale(channels), mg(channels), mgx(channels);
    for (int64_t c = 0; c < channels; ++c) {
      T a = 0, b = 0;
      for (int64_t t = 0; t < kc; ++t) {
        a += sg[c * kc + t];
        b += sgx[c * kc + t];
      }
      gb[c] = a;
      gw[c] = b;
      scale[c] = w[c] * ip[c];
      mg[c] = a / n;
      mgx[c] = b / n;
    }

    // Pass 2: grad_x.
    const int64_t period = s.planes() ? 0 : pattern_period(s);
    std::vector<T> pats_v[kBwdParams];
    const void* pats[kBwdParams] = {};
    if (!s.planes()) {
      const T* src[kBwdParams] = {mp, ip, scale.data(), mg.data(), mgx.data()};
      for (int q = 0; q < kBwdParams; ++q) {
        pats_v[q] = pattern(src[q], s, period);
        pats[q] = pats_v[q].data();
      }
    }
    for_each_element_range(
        s,
        [&](int64_t i, int64_t len, int64_t c) {
          const double p[kBwdParams] = {mp[c], ip[c], scale[c], mg[c], mgx[c]};
          loops.grad_channel(dy + i, yp + i, xp + i, dx + i, p, slope, use_batch_stats, len);
        },
        [&](int64_t i, int64_t len) {
          loops.grad_periodic(dy + i, yp + i, xp + i, dx + i, pats, period, i % period, slope,
                              use_batch_stats, len);
        });
  });
  return {grad_x, grad_weight, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan, CPU, m) {
  m.impl("batch_norm_act", &batch_norm_act_cpu);
  m.impl("batch_norm_act_backward", &batch_norm_act_backward_cpu);
}

}  // namespace fastgan
