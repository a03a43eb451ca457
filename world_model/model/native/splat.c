/* The projection, z-buffer and gather of reproject.splat, for the CPU (built and loaded by
 * model/splat_native.py).
 *
 * The same winners as reproject.zbuffer_torch, found point by point instead of over [4, N, H*W] tensors:
 * per target pixel, the point of least (depth in DEPTH_QUANTUM units, then index) landing there; with
 * priorities, a second pass keeps only points within `tolerance` of that nearest depth and takes the one of
 * least (priority, then index). The winners' features and depths are then copied into the target images.
 * Keys pack the ordering into an int64 as torch's do, the index being the point's place among its target's
 * sources (which keeps the order of torch's global source pixel index). Each target image is one thread's
 * work, so the result does not depend on the number of threads.
 *
 * Built without -ffast-math and with -ffp-contract=off: every float operation rounds as torch's does
 * (-fno-trapping-math only lets the compiler vectorise the projection).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define KEY_SHIFT 32
#define EMPTY INT64_MAX
#define LOW_BITS ((((int64_t)1) << KEY_SHIFT) - 1)

/* The target camera's pinhole, the least depth a point needs in front of it, the depth infinite source
 * pixels are warped at (inf: they land nowhere), and the z-buffer's constants as reproject.py defines them:
 * `quantum` (DEPTH_QUANTUM, metres per depth-key unit) and `behind` (FOOTPRINT_DEPTH_FACTOR). */
typedef struct {
  float fx, fy, cx, cy, min_z, far;
  double quantum;
  float behind;
} Camera;

/* One source's points as its target camera sees them, [H*W] each: target-camera z, the first of the
 * pixels each point writes (`base`, the top-left of its 2x2 with footprint 2) and which it writes (`code`,
 * see `project`). */
typedef struct {
  float *z;
  int32_t *base;
  uint8_t *code;
} Projected;

/* floorf without a library call, for |x| well inside the int32 range */
static inline int32_t floor_i32(float x) {
  int32_t i = (int32_t)x;
  return i - ((float)i > x);
}

/* two selects, not nested ternaries: the same value for every x (NaN included), and GCC keeps the
 * projection loop vectorised (nested, it did not under AVX2 and made slower code under SSE2: the kernel took
 * 4.28 against 4.10 ms a batch-32 call) */
static inline float clampf(float x, float lo, float hi) {
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

/* reproject._project and the pixels each point writes, for one source: z as torch computes it, operation
 * by operation, then from the sub-pixel u, v the spots of zbuffer_torch. `code` bit s (0-3) says spot s
 * (at base + 0, + w, + 1, + w + 1) is in the image and the point may land (finite positive depth, in front
 * of the camera); bits 4-6 say which spot is the point's own pixel (4: none), the others get it slightly
 * behind. Footprint 1 writes only spot 0, its own. `rx`, `ry`: the x, y of each pixel's camera ray.
 * Branch-free, so the compiler vectorises it. */
static void project(const float *restrict depth, const float *restrict rx, const float *restrict ry,
                    const float *restrict r, const Camera *cam, int footprint, int32_t h, int32_t w,
                    float *restrict z, int32_t *restrict base, uint8_t *restrict code) {
  const int32_t hw = h * w;
  const float fx = cam->fx, fy = cam->fy, cx = cam->cx, cy = cam->cy, min_z = cam->min_z, far = cam->far;
  const float half = footprint == 2 ? 0.5f : 0.0f, right = (float)w + 4.0f, bottom = (float)h + 4.0f;
  const int32_t spots = footprint == 2 ? 15 : 1;
  for (int32_t p = 0; p < hw; p++) {
    float d = depth[p] == INFINITY ? far : depth[p];
    int32_t valid = (d > 0.0f) & (d < INFINITY); /* finite and positive; NaN fails both */
    d = valid ? d : 1.0f;
    float x = rx[p] * d, y = ry[p] * d; /* the rays' z is 1 */
    float px = x * r[0] + y * r[1] + d * r[2] + r[3];
    float py = x * r[4] + y * r[5] + d * r[6] + r[7];
    float pz = x * r[8] + y * r[9] + d * r[10] + r[11];
    float zc = pz > 1e-6f ? pz : 1e-6f;
    z[p] = pz;
    /* clamped only far outside the image (where every spot is out): the int conversion stays in range */
    float uf = clampf(fx * px / zc + cx, -4.0f, right), vf = clampf(fy * py / zc + cy, -4.0f, bottom);
    int32_t u = floor_i32(uf), v = floor_i32(vf), ub = floor_i32(uf - half), vb = floor_i32(vf - half);
    int32_t du = u - ub, dv = v - vb;
    int32_t own = ((du == 0) | (du == 1)) & ((dv == 0) | (dv == 1)) ? 2 * du + dv : 4;
    int32_t in_u0 = (ub >= 0) & (ub < w), in_u1 = (ub + 1 >= 0) & (ub + 1 < w);
    int32_t in_v0 = (vb >= 0) & (vb < h), in_v1 = (vb + 1 >= 0) & (vb + 1 < h);
    int32_t inside = (in_u0 & in_v0) | (in_u0 & in_v1) << 1 | (in_u1 & in_v0) << 2 | (in_u1 & in_v1) << 3;
    int32_t lands = valid & (pz > min_z);
    base[p] = vb * w + ub;
    code[p] = (uint8_t)(lands ? (inside & spots) | own << 4 : 0);
  }
}

/* depth key: z in `quantum` units (as torch rounds DEPTH_QUANTUM for float math), to nearest with ties to
 * even (torch.round) */
static inline int64_t depth_units(float z, float quantum) { return llrintf(z / quantum); }

static inline void keep_least(int64_t *slot, int64_t key) { *slot = key < *slot ? key : *slot; }

/* One target image g from its `m` sources `srcs` (in index order): projection, both passes, then the
 * gather. `proj` has room for m projected sources; `best` [H*W] and `limit` [H*W] are scratch; `bits`: the
 * pixel bits of a point's index in a key. */
static void splat_target(int64_t g, const int64_t *srcs, int64_t m, const float *const *depth,
                         const float *rays, const float *rel, const Camera *cam, const int64_t *priority,
                         int32_t h, int32_t w, const float *const *planes, int64_t c, double tolerance,
                         int footprint, Projected proj, int bits, float *out, float *zbuf, uint8_t *mask,
                         int64_t *best, double *limit) {
  const int64_t hw = h * w;
  const int32_t offset[4] = {0, w, 1, w + 1};
  const float quantum = (float)cam->quantum, factor = cam->behind;
  for (int64_t p = 0; p < hw; p++) best[p] = EMPTY;
  for (int64_t j = 0; j < m; j++) { /* pass 1: the nearest depth */
    const int64_t src = srcs[j], at = j * hw;
    const float *z = proj.z + at;
    const int32_t *base = proj.base + at;
    const uint8_t *code = proj.code + at;
    project(depth[src], rays, rays + hw, rel + src * 16, cam, footprint, h, w, proj.z + at,
            proj.base + at, proj.code + at);
    for (int64_t p = 0; p < hw; p++) {
      const int spots = code[p] & 15, own = code[p] >> 4;
      if (!spots) continue;
      int64_t point = j << bits | p, near = (depth_units(z[p], quantum) << KEY_SHIFT) + point;
      int64_t behind = footprint == 2 ? (depth_units(z[p] * factor, quantum) << KEY_SHIFT) + point : near;
      if (spots == 15) { /* all four in the image (the common case): no tests */
        for (int s = 0; s < 4; s++) keep_least(&best[base[p] + offset[s]], s == own ? near : behind);
        continue;
      }
      for (int s = 0; s < 4; s++)
        if (spots >> s & 1) keep_least(&best[base[p] + offset[s]], s == own ? near : behind);
    }
  }
  if (priority != NULL) { /* pass 2: among points near that depth, the preferred source */
    for (int64_t p = 0; p < hw; p++) {
      limit[p] = (double)(best[p] >> KEY_SHIFT) * cam->quantum * (1.0 + tolerance) + cam->quantum;
      best[p] = EMPTY;
    }
    for (int64_t j = 0; j < m; j++) {
      const int64_t src = srcs[j], at = j * hw;
      const float *z = proj.z + at;
      const int32_t *base = proj.base + at;
      const uint8_t *code = proj.code + at;
      for (int64_t p = 0; p < hw; p++) {
        const int spots = code[p] & 15, own = code[p] >> 4;
        if (!spots) continue;
        const double near = (double)z[p], behind = (double)(z[p] * factor);
        const int64_t key = (priority[src] << KEY_SHIFT) + (j << bits | p);
        if (spots == 15) { /* all four in the image: no branches (the depth test is data, not a jump) */
          for (int s = 0; s < 4; s++) {
            const int64_t t = base[p] + offset[s];
            keep_least(&best[t], (s == own ? near : behind) <= limit[t] ? key : EMPTY);
          }
          continue;
        }
        for (int s = 0; s < 4; s++) {
          const int64_t t = base[p] + offset[s];
          if ((spots >> s & 1) && (s == own ? near : behind) <= limit[t]) keep_least(&best[t], key);
        }
      }
    }
  }
  const int64_t low = (((int64_t)1) << bits) - 1;
  for (int64_t p = 0; p < hw; p++) { /* gather the winners */
    int64_t tp = g * hw + p;
    if (best[p] == EMPTY) {
      mask[tp] = 0;
      zbuf[tp] = INFINITY;
      for (int64_t ch = 0; ch < c; ch++) out[tp * c + ch] = 0.0f;
      continue;
    }
    int64_t j = (best[p] & LOW_BITS) >> bits, q = best[p] & low;
    const float *const *from = planes + srcs[j] * c;
    mask[tp] = 1;
    zbuf[tp] = proj.z[j * hw + q];
    for (int64_t ch = 0; ch < c; ch++) out[tp * c + ch] = from[ch][q];
  }
}

/* Warps sources [N] into targets [G] (see reproject.splat): `depth` [N] points to each source's [H*W]
 * depths, `planes` [N * C] to each of its C feature planes [H*W] (read in place: no stacking), `rays`
 * [2, H*W] holds the x and y of each pixel's camera ray (z = 1), `rel` [N, 4, 4] each source camera in its
 * target's frame, `groups` [N] each source's target; `far` is the depth of infinite (sky) pixels, or inf to
 * drop them. Writes `out` [G, H*W, C], `zbuf` and `mask` [G, H*W]. Targets are split among
 * `threads` OpenMP threads (torch's own pool, when built with -fopenmp), each with scratch for one target's
 * sources. Returns 0; 1 when out of memory; 2 when a target has too many sources for the 32 index bits of
 * a key; 3 when a group is not in [0, G). */
int dreamx_splat(const float *const *depth, const float *rays, const float *rel, float fx, float fy,
                 float cx, float cy, float min_z, float far, double quantum, float behind,
                 const int64_t *groups, const int64_t *priority,
                 int64_t n, int64_t h, int64_t w, const float *const *planes, int64_t c, double tolerance,
                 int footprint, int64_t n_groups, int threads, float *out, float *zbuf, uint8_t *mask) {
  const Camera cam = {fx, fy, cx, cy, min_z, far, quantum, behind};
  const int64_t hw = h * w;
  for (int64_t s = 0; s < n; s++)
    if (groups[s] < 0 || groups[s] >= n_groups) return 3;
  /* each target's sources in index order (a counting sort by group): order[start[g] .. start[g + 1]) */
  int64_t *start = calloc(n_groups + 2, sizeof(int64_t)), *order = malloc(sizeof(int64_t) * (n + 1));
  if (start == NULL || order == NULL) {
    free(start), free(order);
    return 1;
  }
  int64_t most = 0;
  for (int64_t s = 0; s < n; s++) start[groups[s] + 2]++;
  for (int64_t g = 0; g < n_groups; g++) {
    most = start[g + 2] > most ? start[g + 2] : most;
    start[g + 2] += start[g + 1];
  }
  for (int64_t s = 0; s < n; s++) order[start[groups[s] + 1]++] = s; /* shifts start down by one place */
  int bits = 0; /* a point's index in a key: its source's place among its target's sources << bits | pixel */
  while ((((int64_t)1) << bits) < hw) bits++;
  if ((most << bits) > LOW_BITS + 1) {
    free(start), free(order);
    return 2;
  }
  int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
  {
    int64_t *best = malloc(sizeof(int64_t) * hw);
    double *limit = malloc(sizeof(double) * hw);
    Projected proj = {malloc(sizeof(float) * hw * (most + 1)), malloc(sizeof(int32_t) * hw * (most + 1)),
                      malloc(hw * (most + 1))};
    failed = !best || !limit || !proj.z || !proj.base || !proj.code;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_groups; g++)
      if (!failed)
        splat_target(g, order + start[g], start[g + 1] - start[g], depth, rays, rel, &cam, priority, h, w,
                     planes, c, tolerance, footprint, proj, bits, out, zbuf, mask, best, limit);
    free(best), free(limit), free(proj.z), free(proj.base), free(proj.code);
  }
  free(start), free(order);
  return failed;
}
