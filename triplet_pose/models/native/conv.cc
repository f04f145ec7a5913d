// Convolution kernels for XLA:CPU, as FFI handlers; NHWC input, HWIO kernel,
// float32, symmetric zero padding `pad`:
//
// * TripletPoseConvWeightGrad: dW[kh, kw, ci, co] = sum over n, oh, ow of
//   x[n, oh * stride + kh - pad, ow * stride + kw - pad, ci] * dy[n, oh, ow, co]
// * TripletPoseConvForward:
//   y[n, oh, ow, co] = sum over kh, kw, ci of
//   x[n, oh * stride + kh - pad, ow * stride + kw - pad, ci] * w[kh, kw, ci, co]
//   (the input gradient of a stride-1 convolution is this with the kernel
//   flipped and its channels swapped).
//
// Out-of-range input positions are the zero padding. Loaded and compiled by
// triplet_pose/models/native_kernels.py with -march=native, so the vector
// width is the machine's: 16 floats with AVX-512, 8 with AVX2. Output
// channels go in vectors, and each kernel keeps an R x V tile of accumulators
// in registers: R input channels (weight gradient) or R output pixels
// (forward) by V vectors of output channels. The work is split into units of
// output rows that the calling thread and the threads of XLA's intra-op pool
// take in turn; the weight gradient gives each unit its own partial sum and
// adds them in unit order, so no result depends on how many threads ran or
// which ran what.

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRegisters = 32;
#else
constexpr int kLanes = 8;
constexpr int kRegisters = 16;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef float VecU __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));

inline Vec Load(const float* p) { return *reinterpret_cast<const VecU*>(p); }
inline void Store(float* p, Vec v) { *reinterpret_cast<VecU*>(p) = v; }
// One broadcast load (`Vec{} + *p` would add a scalar 0.0 first: -0.0 + 0.0).
inline Vec Broadcast(const float* p) {
#if defined(__AVX512F__)
  return _mm512_set1_ps(*p);
#else
  return _mm256_set1_ps(*p);
#endif
}

struct Geometry {
  int64_t n, h, w, ci;   // input
  int64_t ho, wo, co;    // output gradient
  int64_t k, stride, pad;
};

// out[r, v * kLanes + l] += sum_i x[i * x_step + r] * dy[i * dy_step + v * kLanes + l]
template <int R, int V>
inline void Tile(const float* x, int64_t x_step, const float* dy, int64_t dy_step,
                 int64_t count, float* out, int64_t out_step) {
  Vec acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = Vec{};
  for (int64_t i = 0; i < count; ++i) {
    Vec d[V];
    for (int v = 0; v < V; ++v) d[v] = Load(dy + v * kLanes);
    for (int r = 0; r < R; ++r) {
      const Vec b = Broadcast(x + r);
      for (int v = 0; v < V; ++v) acc[r][v] += b * d[v];
    }
    x += x_step;
    dy += dy_step;
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      float* o = out + r * out_step + v * kLanes;
      Store(o, Load(o) + acc[r][v]);
    }
}

// Tile<r, V> for a run-time r in [1, R].
template <int R, int V>
inline void TileRows(int r, const float* x, int64_t x_step, const float* dy, int64_t dy_step,
                     int64_t count, float* out, int64_t out_step) {
  if constexpr (R > 1) {
    if (r < R) return TileRows<R - 1, V>(r, x, x_step, dy, dy_step, count, out, out_step);
  }
  Tile<R, V>(x, x_step, dy, dy_step, count, out, out_step);
}

// Accumulates the rows [row_begin, row_end) (row = n * ho + oh) into dw.
template <int R, int V>
void AccumulateRows(const Geometry& g, const float* x, const float* dy, int64_t row_begin,
                    int64_t row_end, float* dw) {
  constexpr int64_t kBlock = V * kLanes;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / g.ho, oh = row % g.ho;
    for (int64_t kh = 0; kh < g.k; ++kh) {
      const int64_t ih = oh * g.stride + kh - g.pad;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t kw = 0; kw < g.k; ++kw) {
        // The output columns whose input column ow * stride + kw - pad is inside.
        const int64_t last_num = g.w - 1 + g.pad - kw;
        if (last_num < 0) continue;
        const int64_t first = g.pad > kw ? (g.pad - kw + g.stride - 1) / g.stride : 0;
        const int64_t end = std::min(g.wo, last_num / g.stride + 1);
        if (end <= first) continue;
        const float* xrow = x + ((n * g.h + ih) * g.w + first * g.stride + kw - g.pad) * g.ci;
        const float* dyrow = dy + ((n * g.ho + oh) * g.wo + first) * g.co;
        float* tap = dw + (kh * g.k + kw) * g.ci * g.co;
        for (int64_t c0 = 0; c0 < g.co; c0 += kBlock) {
          for (int64_t i0 = 0; i0 < g.ci; i0 += R) {
            const int r = static_cast<int>(std::min<int64_t>(R, g.ci - i0));
            TileRows<R, V>(r, xrow + i0, g.stride * g.ci, dyrow + c0, g.co, end - first,
                           tap + i0 * g.co + c0, g.co);
          }
        }
      }
    }
  }
}

// y[pixel r, c0 + v * kLanes + l] for the r < R pixels ow0 + r of output row
// (n, oh), summed over every tap whose input columns are all inside (the
// caller gives border pixels tiles of one).
template <int R, int V>
inline void ForwardTile(const Geometry& g, const float* x, const float* w, int64_t n,
                        int64_t oh, int64_t ow0, int64_t c0, float* y) {
  Vec acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = Vec{};
  const int64_t x_step = g.stride * g.ci;  // from one output pixel's input to the next
  for (int64_t kh = 0; kh < g.k; ++kh) {
    const int64_t ih = oh * g.stride + kh - g.pad;
    if (ih < 0 || ih >= g.h) continue;
    for (int64_t kw = 0; kw < g.k; ++kw) {
      const int64_t iw = ow0 * g.stride + kw - g.pad;
      if (iw < 0 || iw + (R - 1) * g.stride >= g.w) continue;
      const float* xp = x + ((n * g.h + ih) * g.w + iw) * g.ci;
      const float* wp = w + (kh * g.k + kw) * g.ci * g.co + c0;
      for (int64_t ci = 0; ci < g.ci; ++ci) {
        Vec wv[V];
        for (int v = 0; v < V; ++v) wv[v] = Load(wp + ci * g.co + v * kLanes);
        for (int r = 0; r < R; ++r) {
          const Vec b = Broadcast(xp + r * x_step + ci);
          for (int v = 0; v < V; ++v) acc[r][v] += b * wv[v];
        }
      }
    }
  }
  float* yp = y + ((n * g.ho + oh) * g.wo + ow0) * g.co + c0;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) Store(yp + r * g.co + v * kLanes, acc[r][v]);
}

// ForwardTile<r, V> for a run-time r in [1, R].
template <int R, int V>
inline void ForwardTiles(int r, const Geometry& g, const float* x, const float* w, int64_t n,
                         int64_t oh, int64_t ow0, int64_t c0, float* y) {
  if constexpr (R > 1) {
    if (r < R) return ForwardTiles<R - 1, V>(r, g, x, w, n, oh, ow0, c0, y);
  }
  ForwardTile<R, V>(g, x, w, n, oh, ow0, c0, y);
}

// The output rows [row_begin, row_end) (row = n * ho + oh) of y.
template <int R, int V>
void ForwardRows(const Geometry& g, const float* x, const float* w, int64_t row_begin,
                 int64_t row_end, float* y) {
  constexpr int64_t kBlock = V * kLanes;
  // Pixels whose every tap is inside the row, in tiles of R; the others
  // (near either end) one at a time.
  const int64_t inner_begin = std::min((g.pad + g.stride - 1) / g.stride, g.wo);
  const int64_t last = g.w - g.k + g.pad;  // ow * stride <= last: the rightmost tap is inside
  const int64_t inner_end =
      std::max(inner_begin, last < 0 ? int64_t{0} : std::min(g.wo, last / g.stride + 1));
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / g.ho, oh = row % g.ho;
    for (int64_t c0 = 0; c0 < g.co; c0 += kBlock) {
      for (int64_t ow = 0; ow < inner_begin; ++ow) ForwardTile<1, V>(g, x, w, n, oh, ow, c0, y);
      for (int64_t ow = inner_begin; ow < inner_end; ow += R) {
        const int r = static_cast<int>(std::min<int64_t>(R, inner_end - ow));
        ForwardTiles<R, V>(r, g, x, w, n, oh, ow, c0, y);
      }
      for (int64_t ow = inner_end; ow < g.wo; ++ow) ForwardTile<1, V>(g, x, w, n, oh, ow, c0, y);
    }
  }
}

using RowsFn = void (*)(const Geometry&, const float*, const float*, int64_t, int64_t, float*);

// The widest register tile the output channels allow: R x V accumulators plus
// V loads and one broadcast within the vector registers.
template <template <int, int> class Rows>
RowsFn PickTile(int64_t co) {
  const int64_t vectors = co / kLanes;
  if (kRegisters == 32) {
    if (vectors % 4 == 0) return Rows<6, 4>::Run;
    if (vectors % 2 == 0) return Rows<12, 2>::Run;
    return Rows<12, 1>::Run;
  }
  if (vectors % 2 == 0) return Rows<6, 2>::Run;
  return Rows<12, 1>::Run;
}

template <int R, int V>
struct WeightGradRowsOf {
  static void Run(const Geometry& g, const float* x, const float* dy, int64_t begin,
                  int64_t end, float* dw) { AccumulateRows<R, V>(g, x, dy, begin, end, dw); }
};
template <int R, int V>
struct ForwardRowsOf {
  static void Run(const Geometry& g, const float* x, const float* w, int64_t begin,
                  int64_t end, float* y) { ForwardRows<R, V>(g, x, w, begin, end, y); }
};

// Runs fn(0) ... fn(count - 1) on the calling thread and up to threads - 1
// tasks of the pool; each index runs exactly once. Returns when all have run.
// A task that starts late finds no index left and touches nothing.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t count, const F& fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, count, &fn]() {
    int64_t ran = 0;
    for (int64_t i; (i = state->next.fetch_add(1, std::memory_order_relaxed)) < count; ++ran) fn(i);
    if (ran) state->done.fetch_add(ran, std::memory_order_acq_rel);
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), count) - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    // The task may outlive this call: it keeps `state` and finds no index.
    pool.Schedule([state, count, work]() {
      if (state->next.load(std::memory_order_relaxed) < count) work();
    });
  }
  work();
  while (state->done.load(std::memory_order_acquire) < count) std::this_thread::yield();
}

// The geometry of a convolution of x (N, H, W, C_in) by a k x k kernel into
// out (N, H_out, W_out, C_out), or the error that says what is wrong (`name`
// is the handler's).
ffi::ErrorOr<Geometry> MakeGeometry(const std::string& name, ffi::AnyBuffer::Dimensions x,
                                    ffi::AnyBuffer::Dimensions out, int64_t k, int64_t stride,
                                    int64_t pad) {
  auto invalid = [&](const std::string& what) {
    return ffi::Unexpected<ffi::Error>(ffi::Error::InvalidArgument(name + ": " + what));
  };
  if (x.size() != 4 || out.size() != 4) return invalid("x and the output must be 4-D");
  if (stride < 1 || pad < 0) return invalid("stride must be >= 1 and pad >= 0");
  const Geometry g{x[0], x[1], x[2], x[3], out[1], out[2], out[3], k, stride, pad};
  if (out[0] != g.n || g.ho != (g.h + 2 * pad - k) / stride + 1 ||
      g.wo != (g.w + 2 * pad - k) / stride + 1)
    return invalid("the output's shape does not follow from x's, k, stride and pad");
  if (g.co % kLanes != 0)
    return invalid("output channels must be a multiple of " + std::to_string(kLanes));
  return g;
}

ffi::Error ConvWeightGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                              ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dw,
                              int64_t stride, int64_t pad) {
  const auto wd = dw->dimensions();
  if (wd.size() != 4) return ffi::Error::InvalidArgument("conv_weight_grad: dw must be 4-D");
  auto geometry = MakeGeometry("conv_weight_grad", x.dimensions(), dy.dimensions(), wd[0],
                               stride, pad);
  if (!geometry) return std::move(geometry.error());
  const Geometry& g = *geometry;
  if (wd[1] != g.k || wd[2] != g.ci || wd[3] != g.co)
    return ffi::Error::InvalidArgument("conv_weight_grad: shapes of x, dy and dw disagree");
  const RowsFn rows_fn = PickTile<WeightGradRowsOf>(g.co);
  const int64_t size = g.k * g.k * g.ci * g.co;
  const int64_t rows = g.n * g.ho;
  // Two units per thread (each unit's partial costs a pass to zero and one
  // to add), of at least 512 output pixels, at most 8 MiB of partials in all.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  int64_t per_unit = std::max<int64_t>((rows + 2 * threads - 1) / (2 * threads),
                                       (512 + g.wo - 1) / g.wo);
  const int64_t max_units = std::max<int64_t>(threads, (int64_t{8} << 20) / (size * 4));
  if ((rows + per_unit - 1) / per_unit > max_units) per_unit = (rows + max_units - 1) / max_units;
  const int64_t units = (rows + per_unit - 1) / per_unit;
  float* out = dw->typed_data();
  if (units == 1) {
    std::memset(out, 0, size * sizeof(float));
    rows_fn(g, x.typed_data(), dy.typed_data(), 0, rows, out);
    return ffi::Error::Success();
  }
  std::unique_ptr<float[]> partial(new float[units * size]);
  const float* xp = x.typed_data();
  const float* dyp = dy.typed_data();
  float* parts = partial.get();
  ParallelFor(pool, units, [&](int64_t u) {
    float* part = parts + u * size;
    std::memset(part, 0, size * sizeof(float));
    rows_fn(g, xp, dyp, u * per_unit, std::min(rows, (u + 1) * per_unit), part);
  });
  // out = sum of the partials in unit order, in chunks of 4096 elements.
  constexpr int64_t kChunk = 4096;
  ParallelFor(pool, (size + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t begin = c * kChunk, end = std::min(size, begin + kChunk);
    std::memcpy(out + begin, parts + begin, (end - begin) * sizeof(float));
    for (int64_t u = 1; u < units; ++u) {
      const float* part = parts + u * size;
      for (int64_t i = begin; i < end; ++i) out[i] += part[i];
    }
  });
  return ffi::Error::Success();
}

ffi::Error ConvForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                          int64_t stride, int64_t pad) {
  const auto wd = w.dimensions();
  if (wd.size() != 4) return ffi::Error::InvalidArgument("conv_forward: w must be 4-D");
  auto geometry = MakeGeometry("conv_forward", x.dimensions(), y->dimensions(), wd[0], stride,
                               pad);
  if (!geometry) return std::move(geometry.error());
  const Geometry& g = *geometry;
  if (wd[1] != g.k || wd[2] != g.ci || wd[3] != g.co)
    return ffi::Error::InvalidArgument("conv_forward: shapes of x, w and y disagree");
  const RowsFn rows_fn = PickTile<ForwardRowsOf>(g.co);
  const int64_t rows = g.n * g.ho;
  // About 4 units per thread: each row costs the same but the threads may not.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t per_unit = std::max<int64_t>(1, rows / (4 * threads));
  const int64_t units = (rows + per_unit - 1) / per_unit;
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* out = y->typed_data();
  ParallelFor(pool, units, [&](int64_t u) {
    rows_fn(g, xp, wp, u * per_unit, std::min(rows, (u + 1) * per_unit), out);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(TripletPoseConvWeightGrad, ConvWeightGradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(TripletPoseConvForward, ConvForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad"));

extern "C" int triplet_pose_vector_lanes() { return kLanes; }
