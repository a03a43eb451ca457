/* The learned camera's collision (model/collision.py) for the CPU (built and loaded by
 * model/native/__init__.py): the obstacle points of a batch of predicted frames, and where each of a batch
 * of moves stops among them. Both are collision.py's numpy references (the points through
 * geometry.unproject_many) operation by operation in double precision (built with -ffp-contract=off: no
 * fused multiply-adds), so the points and positions are the same bit for bit; one pass per frame or move
 * instead of a dozen array operations and their temporaries. Both run on the calling thread: a batch-32
 * step's work is well under a millisecond.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* depth [b, hw] (metric z), labels [b, hw] (class ids), poses [b, 4, 4] (camera to world, row-major),
 * is_object [256] (0 or 1 per class id), rays [hw, 3] (each pixel's camera ray at z = 1). Writes the
 * floor-plan x, y of every object pixel of finite positive depth whose world z lies in (lo, hi), frame
 * after frame in pixel order, to out [n, 2] and each frame's number of points to counts [b]; returns n. */
int64_t dreamx_obstacles(const float *depth, const uint8_t *labels, const double *poses,
                         const uint8_t *is_object, const double *rays, int64_t b, int64_t hw, double lo,
                         double hi, double *out, int64_t *counts) {
  int64_t n = 0;
  for (int64_t f = 0; f < b; f++) {
    const double *pose = poses + 16 * f;
    const float *d = depth + f * hw;
    const uint8_t *label = labels + f * hw;
    const int64_t first = n;
    for (int64_t i = 0; i < hw; i++) {
      if (!is_object[label[i]] || !(d[i] > 0.0f) || !(d[i] < INFINITY)) continue;
      /* the camera-frame point (ray times depth), then rotation row by row summed left to right, then t */
      const double c0 = rays[3 * i] * (double)d[i], c1 = rays[3 * i + 1] * (double)d[i];
      const double c2 = rays[3 * i + 2] * (double)d[i];
      const double z = c0 * pose[8] + c1 * pose[9] + c2 * pose[10] + pose[11];
      if (!(z > lo && z < hi)) continue;
      out[2 * n] = c0 * pose[0] + c1 * pose[1] + c2 * pose[2] + pose[3];
      out[2 * n + 1] = c0 * pose[4] + c1 * pose[5] + c2 * pose[6] + pose[7];
      n++;
    }
    counts[f] = n - first;
  }
  return n;
}

#define MAX_RANK 16

/* The distance from (x, y) to the rank-th nearest (1-based) of points [n, 2], n >= rank. */
static double clearance(const double *pts, int64_t n, double x, double y, int64_t rank) {
  double best[MAX_RANK]; /* the rank smallest squared distances so far, ascending */
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) {
    const double dx = pts[2 * i] - x, dy = pts[2 * i + 1] - y, d2 = dx * dx + dy * dy;
    if (kept == rank && !(d2 < best[rank - 1])) continue;
    int64_t at = kept < rank ? kept++ : rank - 1;
    while (at > 0 && best[at - 1] > d2) {
      best[at] = best[at - 1];
      at--;
    }
    best[at] = d2;
  }
  return sqrt(best[rank - 1]);
}

/* collision.slide for each of b moves: from starts [b, 2] toward targets [b, 2] among the points of move i,
 * points [offsets[i] .. offsets[i + 1]) of points [*, 2]. Writes the position reached to out [b, 2]: the
 * target, else the target's x or y alone, else the start. Returns 0; -1 (nothing written) for a min_points
 * outside 1 .. MAX_RANK, -2 where no scratch memory could be had. */
int dreamx_slide(const double *starts, const double *targets, const double *points, const int64_t *offsets,
                 int64_t b, double radius, int64_t min_points, double *out) {
  if (min_points < 1 || min_points > MAX_RANK) return -1;
  int64_t most = 0;
  for (int64_t i = 0; i < b; i++) {
    const int64_t n = offsets[i + 1] - offsets[i];
    most = n > most ? n : most;
  }
  double *near = malloc(sizeof(double) * 2 * (size_t)(most > 0 ? most : 1)); /* the points that can matter */
  if (near == NULL) return -2;
  for (int64_t i = 0; i < b; i++) {
    const double sx = starts[2 * i], sy = starts[2 * i + 1], tx = targets[2 * i], ty = targets[2 * i + 1];
    const double *pts = points + 2 * offsets[i];
    out[2 * i] = tx, out[2 * i + 1] = ty;
    if (sx == tx && sy == ty) continue;
    const double ax = fabs(tx - sx), ay = fabs(ty - sy);
    const double reach = radius + (ax >= ay ? ax : ay);
    int64_t n = 0;
    for (int64_t j = 0; j < offsets[i + 1] - offsets[i]; j++) {
      if (fabs(pts[2 * j] - sx) < reach && fabs(pts[2 * j + 1] - sy) < reach) {
        near[2 * n] = pts[2 * j], near[2 * n + 1] = pts[2 * j + 1];
        n++;
      }
    }
    if (n < min_points) continue;
    double needed = clearance(near, n, sx, sy, min_points);
    needed = radius <= needed ? radius : needed;
    const double tries[3][2] = {{tx, ty}, {tx, sy}, {sx, ty}};
    int moved = 0;
    for (int t = 0; t < 3 && !moved; t++) {
      if (clearance(near, n, tries[t][0], tries[t][1], min_points) >= needed) {
        out[2 * i] = tries[t][0], out[2 * i + 1] = tries[t][1];
        moved = 1;
      }
    }
    if (!moved) out[2 * i] = sx, out[2 * i + 1] = sy;
  }
  free(near);
  return 0;
}
