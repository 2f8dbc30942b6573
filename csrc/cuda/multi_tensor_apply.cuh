// Multi-tensor apply: one kernel launch walks many tensors.
//
// A GAN step touches tens to hundreds of small tensors (conv weights,
// biases, norm scales). One elementwise launch per tensor costs ~3-5 us of
// launch overhead each, while clamping a 64x64x3x3 fp32 weight (144 KiB)
// moves its bytes in well under 1 us of HBM time. So the
// addresses of up to kMaxTensors tensors of DEPTH lists travel to one launch
// inside the kernel's parameters, together with a table that tells each
// block which (tensor, chunk) it owns. The design is apex's
// multi_tensor_apply, with int64 sizes and 16-byte vector accesses.
//
// Usage (DEPTH = number of lists, e.g. 1 for a clip, 4 for an optimizer
// step over params, grads, two state buffers):
//
//   struct MyOp {
//     C10_HOST_DEVICE void operator()(const mta::Chunk<2>& chunk, float a) const {
//       mta::for_each_element<4, float, const float>(
//           chunk, [a](float& p, const float& g) { p -= a * g; });
//     }
//   };
//   mta::multi_tensor_apply<2>({params, grads}, MyOp{}, 0.01f);
//
// Element k of tensor t must be the same logical element in every list:
// tensors at one index have equal sizes and strides (checked), and each is
// dense (fastgan::is_dense, checked), so a chunk is a plain linear range of
// memory. Zero-element tensors are skipped.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>

#include "../checks.h"

// __grid_constant__ (CUDA 11.7+, sm_70+) lets device code index the
// parameter struct in place (ld.param/constant bank) even through a
// reference; without it, taking the struct's address makes nvcc copy all
// 3,840 bytes into local memory in every thread. (Same spelling in the host
// and device passes; CUDA 13 has no pre-sm_70 targets anyway.)
#if defined(__CUDACC__) && defined(CUDART_VERSION) && CUDART_VERSION >= 11070
#define FASTGAN_GRID_CONSTANT __grid_constant__
#else
#define FASTGAN_GRID_CONSTANT
#endif

// #pragma unroll is for the device pass; the host pass (used by emulation
// tests of the index math) would warn about an unknown pragma.
#if defined(__CUDA_ARCH__)
#define FASTGAN_UNROLL _Pragma("unroll")
#else
#define FASTGAN_UNROLL
#endif

namespace fastgan::mta {

// ---------------------------------------------------------------------------
// Sizes and why.
//
// kBlockSize = 512: up to 4 resident blocks fill an SM's 2048 threads on
// sm_80/sm_90, and 512 threads x 16-byte vectors x kUnroll 4 = 32 KiB of
// loads in flight per block, enough to hide HBM latency with a few blocks
// per SM. (__launch_bounds__ caps registers at 128/thread.)
inline constexpr int kBlockSize = 512;
// Independent 16-byte vectors each thread loads before it stores any (more
// memory-level parallelism; the loads cannot be hoisted by the compiler
// across stores through possibly aliasing pointers).
inline constexpr int kUnroll = 4;
// kChunkSize = 64K elements = 256 KiB of fp32: a block iterates
// 65536 / (512 x 4 floats x 4) = 8 times over a chunk, which amortizes its
// table lookup and launch, while a 1M-element tensor still spreads over 16
// blocks. A multiple of every vector width, so a chunk starts as aligned
// as its tensor does.
inline constexpr int64_t kChunkSize = 65536;
// Chunk numbers are int32 in the table: tensors up to 2^31 chunks x 64K =
// 2^47 elements; sizes and element offsets are int64 everywhere.
inline constexpr int64_t kMaxChunksPerTensor = std::numeric_limits<int32_t>::max();

// The classic limit on a __global__ function's parameters is 4096 bytes
// (all toolkits before CUDA 12.1, and pre-Volta GPUs on any; 12.1+ allows
// 32,764 bytes on Volta and newer). Staying under 4 KiB works everywhere.
// The metadata gets 3840 bytes; the functor and the extra arguments share
// the other 256 (static_assert in multi_tensor_apply).
inline constexpr size_t kKernelParamLimit = 4096;
inline constexpr size_t kMetadataBudget = 3840;
inline constexpr size_t kArgsBudget = kKernelParamLimit - kMetadataBudget;

namespace detail {
// Half of the metadata budget buys tensor slots: each costs one address per
// list plus an int64 size, 8 * (DEPTH + 1) bytes. DEPTH 1..5 -> 120, 80,
// 60, 48, 40 tensors per launch.
constexpr int max_tensors(int depth) {
  return static_cast<int>((kMetadataBudget / 2) / (8 * (depth + 1)));
}
// The rest buys table entries, 5 bytes each (int32 chunk + uint8 tensor),
// rounded down to a multiple of 8 so that padding cannot push the struct
// over budget: 384 blocks per launch for every DEPTH 1..5
// (384 x 64K = 25M elements = 96 MiB of fp32 per launch, read and written
// in ~65 us at ~3 TB/s on an H100, so the ~4 us overhead of each further
// launch for a bigger tensor is noise).
constexpr int max_blocks(int depth) {
  return static_cast<int>(
      ((kMetadataBudget - static_cast<size_t>(max_tensors(depth)) * 8 * (depth + 1)) /
       (sizeof(int32_t) + sizeof(uint8_t))) / 8 * 8);
}
}  // namespace detail

// Passed by value as the first kernel parameter. Slot s of a launch holds
// one tensor (its address in each list and its numel); table entry b says
// block b processes chunk block_to_chunk[b] of slot block_to_tensor[b].
template <int DEPTH>
struct TensorListMetadata {
  static_assert(DEPTH >= 1 && DEPTH <= 5, "multi_tensor_apply supports 1 to 5 lists");
  static constexpr int kDepth = DEPTH;
  static constexpr int kMaxTensors = detail::max_tensors(DEPTH);
  static constexpr int kMaxBlocks = detail::max_blocks(DEPTH);
  static_assert(kMaxTensors >= 1 && kMaxTensors <= 256, "block_to_tensor is uint8");

  void* addresses[DEPTH][kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t block_to_chunk[kMaxBlocks];
  uint8_t block_to_tensor[kMaxBlocks];
};

static_assert(sizeof(TensorListMetadata<1>) <= kMetadataBudget, "metadata over budget");
static_assert(sizeof(TensorListMetadata<2>) <= kMetadataBudget, "metadata over budget");
static_assert(sizeof(TensorListMetadata<3>) <= kMetadataBudget, "metadata over budget");
static_assert(sizeof(TensorListMetadata<4>) <= kMetadataBudget, "metadata over budget");
static_assert(sizeof(TensorListMetadata<5>) <= kMetadataBudget, "metadata over budget");
static_assert(TensorListMetadata<1>::kMaxTensors == 120 && TensorListMetadata<1>::kMaxBlocks == 384);
static_assert(TensorListMetadata<4>::kMaxTensors == 48 && TensorListMetadata<4>::kMaxBlocks == 384);
static_assert(TensorListMetadata<5>::kMaxTensors == 40 && TensorListMetadata<5>::kMaxBlocks == 384);

// What one thread of one block sees: the chunk's tensor in each list, the
// chunk's first element, its length, and the thread's index in the block.
template <int DEPTH>
struct Chunk {
  void* base[DEPTH];  // tensor start in list d (not the chunk's)
  int64_t start;      // first element of the chunk within the tensor
  int n;              // elements in the chunk, 1..kChunkSize
  int tid;            // thread index in the block, 0..kBlockSize-1

  template <typename T>
  C10_HOST_DEVICE T* data(int d) const {
    return static_cast<T*>(base[d]) + start;
  }
};

// N elements of T, aligned to their full size, so that a load or store of
// one is a single 16-byte (or smaller) vector access.
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T val[N];
};

namespace detail {

template <std::size_t I, typename T, int V>
struct TileLeaf {
  Vec<std::remove_const_t<T>, V> v;
};

// One vector per list, held in registers: loaded from every list, handed
// element by element to the op, stored back to the lists whose element type
// is not const.
template <int V, typename Seq, typename... Ts>
struct Tile;

template <int V, std::size_t... I, typename... Ts>
struct Tile<V, std::index_sequence<I...>, Ts...> : TileLeaf<I, Ts, V>... {
  template <std::size_t J, typename T>
  C10_HOST_DEVICE TileLeaf<J, T, V>& leaf() {
    return static_cast<TileLeaf<J, T, V>&>(*this);
  }

  C10_HOST_DEVICE void load(int i, Ts*... p) {
    ((leaf<I, Ts>().v = reinterpret_cast<const Vec<std::remove_const_t<Ts>, V>*>(p)[i]), ...);
  }

  template <typename Op>
  C10_HOST_DEVICE void apply(Op& op) {
    FASTGAN_UNROLL
    for (int j = 0; j < V; ++j) op(static_cast<Ts&>(leaf<I, Ts>().v.val[j])...);
  }

  C10_HOST_DEVICE void store(int i, Ts*... p) {
    (store_one<I, Ts>(i, p), ...);
  }

  template <std::size_t J, typename T>
  C10_HOST_DEVICE void store_one(int i, T* p) {
    if constexpr (!std::is_const_v<T>) reinterpret_cast<Vec<T, V>*>(p)[i] = leaf<J, T>().v;
  }
};

// Elements [0, n / V * V) of the chunk in vectors of V, kUnroll vectors per
// thread per iteration, consecutive threads on consecutive vectors
// (coalesced). Returns the first element it did not cover.
template <int V, typename Op, typename... Ts>
C10_HOST_DEVICE int vector_body(int n, int tid, Op& op, Ts*... p) {
  using TileT = Tile<V, std::index_sequence_for<Ts...>, Ts...>;
  const int nvec = n / V;
  for (int first = tid; first < nvec; first += kBlockSize * kUnroll) {
    TileT tile[kUnroll];
    FASTGAN_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      const int i = first + u * kBlockSize;
      if (i < nvec) tile[u].load(i, p...);
    }
    FASTGAN_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      const int i = first + u * kBlockSize;
      if (i < nvec) {
        tile[u].apply(op);
        tile[u].store(i, p...);
      }
    }
  }
  return nvec * V;
}

template <int V, typename T>
C10_HOST_DEVICE bool vector_aligned(T* p) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V) == 0;
}

template <int V, typename Op, typename... Ts>
C10_HOST_DEVICE void for_each_element_impl(int n, int tid, Op& op, Ts*... p) {
  // Chunk starts are multiples of kChunkSize elements from the tensor start,
  // so a chunk is V-aligned exactly when its tensor is. A list that is not
  // (a dense view starting mid-vector, e.g. t[1:]) sends the chunk down the
  // element-wise path (same unrolled loop, V = 1).
  const int done = (vector_aligned<V>(p) && ...) ? vector_body<V>(n, tid, op, p...)
                                                 : vector_body<1>(n, tid, op, p...);
  // The last n % V (< V) elements of a tensor's final chunk.
  for (int i = done + tid; i < n; i += kBlockSize) op(p[i]...);
}

template <int V, typename... Ts, int DEPTH, typename Op, std::size_t... I>
C10_HOST_DEVICE void for_each_element_seq(const Chunk<DEPTH>& chunk, Op& op,
                                          std::index_sequence<I...>) {
  for_each_element_impl<V>(chunk.n, chunk.tid, op, chunk.template data<Ts>(I)...);
}

}  // namespace detail

// Calls op(x0, x1, ...) once for every element of the chunk, xd a reference
// to the element of list d (type Ts[d]; a const type marks a read-only list,
// which is never written back). V elements per vector: use 16 / sizeof of
// the widest type for 16-byte accesses. Must run inside
// multi_tensor_apply_kernel (blockDim.x == kBlockSize). The op sees
// registers on the vector path and memory on the scalar path, so it must
// only touch its own arguments.
template <int V, typename... Ts, int DEPTH, typename Op>
C10_HOST_DEVICE void for_each_element(const Chunk<DEPTH>& chunk, Op op) {
  static_assert(sizeof...(Ts) == DEPTH, "one element type per list");
  static_assert(V >= 1 && (V & (V - 1)) == 0, "vector width must be a power of two");
  static_assert(kChunkSize % V == 0, "chunks must start vector-aligned");
  detail::for_each_element_seq<V, Ts...>(chunk, op, std::index_sequence_for<Ts...>{});
}

namespace detail {

// The body of one thread of one block; a separate host-device function so
// that the index math can be emulated on a CPU.
template <int DEPTH, typename Functor, typename... Args>
C10_HOST_DEVICE void run_block(const TensorListMetadata<DEPTH>& meta, int block, int tid,
                               Functor functor, Args... args) {
  const int slot = meta.block_to_tensor[block];
  Chunk<DEPTH> chunk;
  FASTGAN_UNROLL
  for (int d = 0; d < DEPTH; ++d) chunk.base[d] = meta.addresses[d][slot];
  chunk.start = static_cast<int64_t>(meta.block_to_chunk[block]) * kChunkSize;
  const int64_t left = meta.numel[slot] - chunk.start;
  chunk.n = static_cast<int>(left < kChunkSize ? left : kChunkSize);
  chunk.tid = tid;
  functor(chunk, args...);
}

// Packs tensors 0..ntensors-1 into launches. fill(meta, slot, t) writes
// tensor t's addresses into slot `slot` and returns its numel;
// launch(meta, nblocks) runs one launch of table entries [0, nblocks).
//
// Greedy, in order: a launch happens only when the table is full (384
// blocks) or the slots are (kMaxTensors) and the last tensor is complete.
// A tensor larger than what is left of the table continues in the next
// launch from slot 0 at its next chunk. Each launch thus takes the longest
// possible run of the (tensor, chunk) sequence, the fewest launches for
// tensors taken in order: typically max(ceil(chunks / 384),
// ceil(tensors / kMaxTensors)). 300 small tensors of one list -> 3
// launches (7 for DEPTH 4); one 3e9-element tensor (45,777 chunks) -> 120
// launches, each 384 blocks. Zero-element tensors get no slot and no block.
template <int DEPTH, typename Fill, typename Launch>
void plan_launches(int64_t ntensors, Fill&& fill, Launch&& launch) {
  using Meta = TensorListMetadata<DEPTH>;
  Meta meta{};
  int slots = 0;   // slots used in `meta`
  int blocks = 0;  // table entries used in `meta`
  for (int64_t t = 0; t < ntensors; ++t) {
    const int64_t numel = fill(meta, slots, t);
    if (numel == 0) continue;  // slot left unclaimed; the next tensor overwrites it
    meta.numel[slots] = numel;
    ++slots;
    const int64_t chunks = (numel + kChunkSize - 1) / kChunkSize;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      meta.block_to_tensor[blocks] = static_cast<uint8_t>(slots - 1);
      meta.block_to_chunk[blocks] = static_cast<int32_t>(chunk);
      ++blocks;
      const bool last_chunk = chunk + 1 == chunks;
      if (blocks == Meta::kMaxBlocks || (last_chunk && slots == Meta::kMaxTensors)) {
        // The launch copies `meta` into its parameters: reusing it is safe.
        launch(static_cast<const Meta&>(meta), blocks);
        blocks = 0;
        if (last_chunk) {
          slots = 0;
        } else {  // tensor continues: carry it over as slot 0
          for (int d = 0; d < DEPTH; ++d) meta.addresses[d][0] = meta.addresses[d][slots - 1];
          meta.numel[0] = meta.numel[slots - 1];
          slots = 1;
        }
      }
    }
  }
  if (blocks > 0) launch(static_cast<const Meta&>(meta), blocks);
}

// Tensor t at every depth: defined, dense, equal sizes and strides (so
// element k of the linear walk is the same logical element in each list),
// and on `device`. Returns the device of the first tensor, or nullopt when
// there is none.
template <int DEPTH>
std::optional<c10::Device> check_lists(const std::array<at::TensorList, DEPTH>& lists) {
  const size_t n = lists[0].size();
  for (int d = 1; d < DEPTH; ++d) {
    TORCH_CHECK(lists[d].size() == n, "multi_tensor_apply: list ", d, " has ", lists[d].size(),
                " tensors but list 0 has ", n);
  }
  if (n == 0) return std::nullopt;
  const c10::Device device = lists[0][0].device();
  TORCH_CHECK(device.is_cuda(), "multi_tensor_apply: tensors must be CUDA tensors, got ", device);
  for (size_t t = 0; t < n; ++t) {
    const at::Tensor& ref = lists[0][t];
    for (int d = 0; d < DEPTH; ++d) {
      const at::Tensor& x = lists[d][t];
      TORCH_CHECK(x.defined(), "multi_tensor_apply: list ", d, " tensor ", t, " is undefined");
      TORCH_CHECK(x.device() == device, "multi_tensor_apply: list ", d, " tensor ", t, " is on ",
                  x.device(), " but the first tensor is on ", device);
      TORCH_CHECK(fastgan::is_dense(x), "multi_tensor_apply: list ", d, " tensor ", t,
                  " is not dense (non-overlapping and dense); such views need a strided "
                  "(ATen) op instead");
      TORCH_CHECK(x.numel() / kChunkSize < kMaxChunksPerTensor, "multi_tensor_apply: list ", d,
                  " tensor ", t, " has ", x.numel(), " elements, more than the ",
                  kMaxChunksPerTensor, " chunks of ", kChunkSize, " a launch table can name");
      if (d > 0) {
        // the same walk: the same sizes, and the same strides on every dim of more than one
        // element (a size-1 dim's stride is arbitrary: autograd may hand such a gradient to a
        // channels_last weight; csrc/rmsprop_clip.h's check admits it)
        bool same = x.sizes() == ref.sizes();
        for (int64_t k = 0; same && k < ref.dim(); ++k) {
          same = ref.size(k) == 1 || x.stride(k) == ref.stride(k);
        }
        TORCH_CHECK(same, "multi_tensor_apply: list ", d, " tensor ", t, " has sizes ", x.sizes(),
                    " and strides ", x.strides(), " but list 0 has ", ref.sizes(), " and ",
                    ref.strides(), " (strides must agree on every dim of more than one element)");
      }
    }
  }
  return device;
}

constexpr size_t param_bytes() { return 0; }
template <typename T, typename... Rest>
constexpr size_t param_bytes(const T*, const Rest*... rest) {
  // Each parameter padded to 8 bytes: an upper bound on the real layout for
  // the scalars and small structs passed here.
  return (sizeof(T) + 7) / 8 * 8 + param_bytes(rest...);
}

}  // namespace detail

template <int DEPTH, typename Functor, typename... Args>
__global__ void __launch_bounds__(kBlockSize)
    multi_tensor_apply_kernel(const FASTGAN_GRID_CONSTANT TensorListMetadata<DEPTH> meta,
                              Functor functor, Args... args) {
  detail::run_block(meta, static_cast<int>(blockIdx.x), static_cast<int>(threadIdx.x), functor,
                    args...);
}

// Runs functor(chunk, args...) over every element of every tensor of the
// DEPTH lists (tensor t of each list walked together), on the current CUDA
// stream of the tensors' device (so it can be captured in a CUDA graph),
// in as few launches as the parameter budget allows.
template <int DEPTH, typename Functor, typename... Args>
void multi_tensor_apply(const std::array<at::TensorList, DEPTH>& lists, const Functor& functor,
                        const Args&... args) {
  static_assert(std::is_trivially_copyable_v<Functor> && (std::is_trivially_copyable_v<Args> && ...),
                "kernel arguments are copied bytewise");
  static_assert(detail::param_bytes(static_cast<const Functor*>(nullptr),
                                    static_cast<const Args*>(nullptr)...) <= kArgsBudget,
                "functor and arguments exceed their 256 bytes of the kernel parameter budget");
  const std::optional<c10::Device> device = detail::check_lists<DEPTH>(lists);
  if (!device) return;
  const c10::cuda::CUDAGuard guard(*device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device->index()).stream();
  detail::plan_launches<DEPTH>(
      static_cast<int64_t>(lists[0].size()),
      [&](TensorListMetadata<DEPTH>& meta, int slot, int64_t t) -> int64_t {
        for (int d = 0; d < DEPTH; ++d) meta.addresses[d][slot] = lists[d][t].data_ptr();
        return lists[0][t].numel();
      },
      [&](const TensorListMetadata<DEPTH>& meta, int nblocks) {
        multi_tensor_apply_kernel<DEPTH, Functor, Args...>
            <<<nblocks, kBlockSize, 0, stream>>>(meta, functor, args...);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace fastgan::mta
