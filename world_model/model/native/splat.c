/* The projection, z-buffer and gather of reproject.splat, for the CPU (built and loaded by
 * model/splat_native.py).
 *
 * The same keys as reproject.zbuffer_torch, computed point by point instead of over [4, N, H*W] tensors:
 * per target pixel, the least (depth in DEPTH_QUANTUM units) << 32 | source pixel index among the points
 * landing there; with priorities, a second pass keeps only points within `tolerance` of that nearest depth
 * and takes the least (priority << 32 | source pixel index). The winners' features and depths are then
 * copied into the target images. Each target image is one thread's work, its sources visited in index
 * order, so the result does not depend on the number of threads.
 *
 * Built without -ffast-math and with -ffp-contract=off: every float operation rounds as torch's does.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define KEY_SHIFT 32
#define EMPTY INT64_MAX
#define LOW_BITS ((((int64_t)1) << KEY_SHIFT) - 1)

static const float QUANTUM_F = 1e-4f;     /* reproject.DEPTH_QUANTUM, as torch rounds it for float math */
static const double QUANTUM_D = 1e-4;     /* ... and for double math */
static const float BEHIND = 1.01f;        /* reproject.FOOTPRINT_DEPTH_FACTOR */

typedef struct {
  float fx, fy, cx, cy, min_z;
} Camera;

/* reproject._project for the sources of one target, operation by operation: target-camera z, sub-pixel
 * u, v of every source pixel, and whether it may land (finite positive depth, in front of the camera). */
static void project(const float *depth, const float *rays, const float *rel, const Camera *cam, int64_t src,
                    int64_t hw, float *z, float *uf, float *vf, uint8_t *ok) {
  const float *r = rel + src * 16;
  for (int64_t p = 0; p < hw; p++) {
    int64_t i = src * hw + p;
    float d = depth[i];
    int valid = isfinite(d) && d > 0.0f;
    d = valid ? d : 1.0f;
    float x = rays[3 * p] * d, y = rays[3 * p + 1] * d, pt[3];
    for (int j = 0; j < 3; j++) pt[j] = x * r[4 * j] + y * r[4 * j + 1] + d * r[4 * j + 2] + r[4 * j + 3];
    float zc = pt[2] > 1e-6f ? pt[2] : 1e-6f;
    z[i] = pt[2];
    uf[i] = cam->fx * pt[0] / zc + cam->cx;
    vf[i] = cam->fy * pt[1] / zc + cam->cy;
    ok[i] = valid && pt[2] > cam->min_z;
  }
}

/* floorf without a library call (x is finite and well inside the int64 range) */
static inline int64_t floor_i64(float x) {
  int64_t i = (int64_t)x;
  return (float)i > x ? i - 1 : i;
}

/* The in-image pixels point `i` writes (returns how many, into `t`): its own (footprint 1), or the 2x2
 * around it (footprint 2); `own[k]` says whether pixel k is the point's own, the others get it slightly
 * behind. */
static int spots_of(const float *uf, const float *vf, int64_t i, int footprint, int64_t h, int64_t w,
                    int64_t *t, int *own) {
  int64_t u = floor_i64(uf[i]), v = floor_i64(vf[i]);
  if (footprint == 1) {
    t[0] = v * w + u;
    own[0] = 1;
    return u >= 0 && u < w && v >= 0 && v < h;
  }
  int64_t ub = floor_i64(uf[i] - 0.5f), vb = floor_i64(vf[i] - 0.5f);
  int k = 0;
  for (int s = 0; s < 4; s++) {
    int64_t us = ub + (s >> 1), vs = vb + (s & 1);
    if (us < 0 || us >= w || vs < 0 || vs >= h) continue;
    t[k] = vs * w + us;
    own[k++] = us == u && vs == v;
  }
  return k;
}

/* depth key: z in DEPTH_QUANTUM units, to nearest with ties to even (torch.round) */
static inline int64_t depth_units(float z) { return llrintf(z / QUANTUM_F); }

/* One target image g: both passes, then the gather. `best` and `ranked` are [H*W] scratch. */
static void splat_target(int64_t g, const float *depth, const float *rays, const float *rel, const Camera *cam,
                         const int64_t *groups, const int64_t *priority, int64_t n, int64_t h, int64_t w,
                         const float *feats, int64_t c, double tolerance, int footprint, float *z, float *uf,
                         float *vf, uint8_t *ok, float *out, float *zbuf, uint8_t *mask, int64_t *best,
                         int64_t *ranked) {
  const int64_t hw = h * w;
  int64_t t[4];
  int own[4];
  for (int64_t p = 0; p < hw; p++) best[p] = EMPTY;
  for (int64_t src = 0; src < n; src++) { /* pass 1: the nearest depth */
    if (groups[src] != g) continue;
    project(depth, rays, rel, cam, src, hw, z, uf, vf, ok);
    for (int64_t i = src * hw; i < (src + 1) * hw; i++) {
      if (!ok[i]) continue;
      int k = spots_of(uf, vf, i, footprint, h, w, t, own);
      int64_t near = (depth_units(z[i]) << KEY_SHIFT) + i;
      int64_t behind = footprint == 2 ? (depth_units(z[i] * BEHIND) << KEY_SHIFT) + i : near;
      for (int s = 0; s < k; s++) {
        int64_t key = own[s] ? near : behind;
        if (key < best[t[s]]) best[t[s]] = key;
      }
    }
  }
  if (priority != NULL) { /* pass 2: among points near that depth, the preferred source */
    for (int64_t p = 0; p < hw; p++) ranked[p] = EMPTY;
    for (int64_t src = 0; src < n; src++) {
      if (groups[src] != g) continue;
      for (int64_t i = src * hw; i < (src + 1) * hw; i++) {
        if (!ok[i]) continue;
        int k = spots_of(uf, vf, i, footprint, h, w, t, own);
        double near = (double)z[i], behind = (double)(z[i] * BEHIND);
        int64_t key = (priority[src] << KEY_SHIFT) + i;
        for (int s = 0; s < k; s++) {
          double znear = (double)(best[t[s]] >> KEY_SHIFT) * QUANTUM_D;
          if ((own[s] ? near : behind) <= znear * (1.0 + tolerance) + QUANTUM_D && key < ranked[t[s]])
            ranked[t[s]] = key;
        }
      }
    }
    for (int64_t p = 0; p < hw; p++) best[p] = ranked[p];
  }
  for (int64_t p = 0; p < hw; p++) { /* gather the winners */
    int64_t tp = g * hw + p;
    if (best[p] == EMPTY) {
      mask[tp] = 0;
      zbuf[tp] = INFINITY;
      for (int64_t ch = 0; ch < c; ch++) out[tp * c + ch] = 0.0f;
      continue;
    }
    int64_t i = best[p] & LOW_BITS, src = i / hw, q = i % hw;
    mask[tp] = 1;
    zbuf[tp] = z[i];
    for (int64_t ch = 0; ch < c; ch++) out[tp * c + ch] = feats[(src * c + ch) * hw + q];
  }
}

/* Warps sources [N] into targets [G] (see reproject.splat): `rel` [N, 4, 4] each source camera in its
 * target's frame, `feats` [N, C, H*W]; `z, uf, vf, ok` [N, H*W] are scratch; writes `out` [G, H*W, C],
 * `zbuf` and `mask` [G, H*W]. Targets are split among `threads` OpenMP threads (torch's own pool, when
 * built with -fopenmp). Returns 0, or 1 when out of memory. */
int dreamx_splat(const float *depth, const float *rays, const float *rel, float fx, float fy, float cx,
                 float cy, float min_z, const int64_t *groups, const int64_t *priority, int64_t n, int64_t h,
                 int64_t w, const float *feats, int64_t c, double tolerance, int footprint, int64_t n_groups,
                 int threads, float *z, float *uf, float *vf, uint8_t *ok, float *out, float *zbuf,
                 uint8_t *mask) {
  const Camera cam = {fx, fy, cx, cy, min_z};
  int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    int64_t *best = malloc(sizeof(int64_t) * h * w), *ranked = malloc(sizeof(int64_t) * h * w);
    failed = best == NULL || ranked == NULL;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_groups; g++)
      if (!failed)
        splat_target(g, depth, rays, rel, &cam, groups, priority, n, h, w, feats, c, tolerance, footprint, z,
                     uf, vf, ok, out, zbuf, mask, best, ranked);
    free(best);
    free(ranked);
  }
  return failed;
}
