// Conv3D kernels (stride 1, dilation 1, groups 1) for masam-conv3d, compiled at run time with
// NVRTC. No CUDA headers are included: f16 and bf16 are carried as raw 16-bit words and
// converted to/from f32 by hand (accumulation is always f32).
//
// Layouts (contiguous, row-major): x (N, C, D, H, W), w (O, C, KD, KH, KW), y (N, O, OD, OH, OW).
// Source index of output z and tap t: z + t - pad (pad may be negative: that crops).

typedef unsigned short u16;

__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }

struct h16 { u16 b; };
__device__ __forceinline__ float ld(const h16* p, long long i) {
  float f; u16 b = p[i].b;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
  return f;
}
__device__ __forceinline__ void st(h16* p, long long i, float v) {
  u16 b;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(v));
  p[i].b = b;
}

struct b16 { u16 b; };
__device__ __forceinline__ float ld(const b16* p, long long i) {
  return __uint_as_float(((unsigned int)p[i].b) << 16);
}
__device__ __forceinline__ void st(b16* p, long long i, float v) {
  unsigned int u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) { p[i].b = 0x7fc0; return; }  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                    // round to nearest even
  p[i].b = (u16)(u >> 16);
}

// y[n, o, z, y, x] = bias[o] + sum_{c, a, b, e} x[n, c, z+a-pd, y+b-ph, x+e-pw] * w[o, c, a, b, e]
// One thread per output element (grid-stride loop).
template <typename T>
__device__ void conv3d_fwd(const T* x, const T* w, const T* bias, T* y, int has_bias,
                           int N, int C, int O, int D, int H, int W, int KD, int KH, int KW,
                           int OD, int OH, int OW, int pd, int ph, int pw) {
  long long total = (long long)N * O * OD * OH * OW;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    long long r = i;
    int ox = r % OW; r /= OW;
    int oy = r % OH; r /= OH;
    int oz = r % OD; r /= OD;
    int o = r % O;
    int n = r / O;
    float acc = has_bias ? ld(bias, o) : 0.0f;
    for (int c = 0; c < C; ++c) {
      const long long xc = ((long long)n * C + c) * D;
      const long long wc = ((long long)o * C + c) * KD;
      for (int a = 0; a < KD; ++a) {
        int sd = oz + a - pd;
        if (sd < 0 || sd >= D) continue;
        for (int b = 0; b < KH; ++b) {
          int sh = oy + b - ph;
          if (sh < 0 || sh >= H) continue;
          const long long xrow = ((xc + sd) * H + sh) * W;
          const long long wrow = ((wc + a) * KH + b) * KW;
          for (int e = 0; e < KW; ++e) {
            int sw = ox + e - pw;
            if (sw < 0 || sw >= W) continue;
            acc += ld(x, xrow + sw) * ld(w, wrow + e);
          }
        }
      }
    }
    st(y, i, acc);
  }
}

// gw[o, c, a, b, e] = sum_{n, z, y, x} gy[n, o, z, y, x] * x[n, c, z+a-pd, y+b-ph, x+e-pw]
// One block per weight element; the block's threads reduce over the N*OD*OH*OW positions.
template <typename T>
__device__ void conv3d_bwd_w(const T* x, const T* gy, T* gw,
                             int N, int C, int O, int D, int H, int W, int KD, int KH, int KW,
                             int OD, int OH, int OW, int pd, int ph, int pw) {
  __shared__ float part[256];
  long long nw = (long long)O * C * KD * KH * KW;
  for (long long wi = blockIdx.x; wi < nw; wi += gridDim.x) {
    long long r = wi;
    int e = r % KW; r /= KW;
    int b = r % KH; r /= KH;
    int a = r % KD; r /= KD;
    int c = r % C;
    int o = r / C;
    long long plane = (long long)OD * OH * OW;
    long long total = (long long)N * plane;
    float acc = 0.0f;
    for (long long p = threadIdx.x; p < total; p += blockDim.x) {
      long long q = p;
      int ox = q % OW; q /= OW;
      int oy = q % OH; q /= OH;
      int oz = q % OD;
      int n = q / OD;
      int sd = oz + a - pd, sh = oy + b - ph, sw = ox + e - pw;
      if (sd < 0 || sd >= D || sh < 0 || sh >= H || sw < 0 || sw >= W) continue;
      float g = ld(gy, ((long long)n * O + o) * plane + (p - (long long)n * plane));
      acc += g * ld(x, (((((long long)n * C + c) * D + sd) * H + sh) * W + sw));
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) st(gw, wi, part[0]);
    __syncthreads();
  }
}

#define CONV3D_KERNELS(SUFFIX, T)                                                              \
  extern "C" __global__ void conv3d_fwd_##SUFFIX(                                              \
      const T* x, const T* w, const T* bias, T* y, int has_bias, int N, int C, int O, int D,   \
      int H, int W, int KD, int KH, int KW, int OD, int OH, int OW, int pd, int ph, int pw) {  \
    conv3d_fwd<T>(x, w, bias, y, has_bias, N, C, O, D, H, W, KD, KH, KW, OD, OH, OW, pd, ph,   \
                  pw);                                                                         \
  }                                                                                            \
  extern "C" __global__ void conv3d_bwd_w_##SUFFIX(                                            \
      const T* x, const T* gy, T* gw, int N, int C, int O, int D, int H, int W, int KD,        \
      int KH, int KW, int OD, int OH, int OW, int pd, int ph, int pw) {                        \
    conv3d_bwd_w<T>(x, gy, gw, N, C, O, D, H, W, KD, KH, KW, OD, OH, OW, pd, ph, pw);          \
  }

CONV3D_KERNELS(f32, float)
CONV3D_KERNELS(f16, h16)
CONV3D_KERNELS(bf16, b16)
