/* Footprint coverage for memory retrieval (memory.coverage) and the greedy choice of memories from it
 * (memory.greedy_torch), for the CPU (built and loaded by model/native/__init__.py).
 *
 * For each camera and each of its candidate footprints (a sparse sample of the world points a remembered
 * frame saw): which cells of the camera's image the footprint's points land in, and the fraction of them
 * that land in the image in front of the camera. The arithmetic is memory._project's, operation by
 * operation in double precision (built with -ffp-contract=off: no fused multiply-adds), so the cells and
 * fractions are the torch path's bit for bit; one pass over the points instead of some thirty tensor
 * operations over all of them. Each footprint is one unit of work, so the result does not depend on the
 * number of threads.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* points [b, e, p, 3] (with shared: [1, e, p, 3], the same footprints for every camera), poses [b, 4, 4]
 * (camera to world, row-major); hits [b, e, cells * cells] (0 or 1), seen [b, e]. */
void dreamx_coverage(const double *points, int shared, const double *poses, int64_t b, int64_t e, int64_t p,
                     double fx, double fy, double cx, double cy, int64_t width, int64_t height, double min_z,
                     int64_t cells, int threads, uint8_t *hits, double *seen) {
  const int64_t n_cells = cells * cells;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < b * e; i++) {
    const double *pose = poses + (i / e) * 16, *pt = points + (shared ? i % e : i) * p * 3;
    uint8_t *hit = hits + i * n_cells;
    memset(hit, 0, (size_t)n_cells);
    int64_t inside = 0;
    for (int64_t k = 0; k < p; k++) {
      /* the point in the camera's frame: (point - t) times the rotation's columns, summed left to right */
      const double d0 = pt[3 * k] - pose[3], d1 = pt[3 * k + 1] - pose[7], d2 = pt[3 * k + 2] - pose[11];
      const double x = d0 * pose[0] + d1 * pose[4] + d2 * pose[8];
      const double y = d0 * pose[1] + d1 * pose[5] + d2 * pose[9];
      const double z = d0 * pose[2] + d1 * pose[6] + d2 * pose[10];
      if (!(z > min_z)) continue; /* behind the camera, or too near (torch's z clamp only matters there) */
      const double u = fx * x / z + cx, v = fy * y / z + cy;
      if (!(u >= 0 && u < (double)width && v >= 0 && v < (double)height)) continue;
      int64_t cu = (int64_t)(u * (double)cells / (double)width);
      int64_t cv = (int64_t)(v * (double)cells / (double)height);
      cu = cu < 0 ? 0 : (cu > cells - 1 ? cells - 1 : cu);
      cv = cv < 0 ? 0 : (cv > cells - 1 ? cells - 1 : cv);
      hit[cv * cells + cu] = 1;
      inside++;
    }
    seen[i] = (double)inside / (double)p;
  }
}

/* memory.greedy_torch's choice for each of `b` cameras among its `e` candidates, operation by operation:
 * hits [b, e, cells] (0 or 1, cells <= 64), seen, ages [b, e], valid [b, e] (0 or 1); writes the chosen
 * indices chosen [b, k] (-1: none). The latest (index 0) first, then each time the valid candidate not
 * taken yet of most newly covered cells + (seen - staleness * age), the first of equals, while it lands
 * somewhere in view. */
void dreamx_select(const uint8_t *hits, const double *seen, const uint8_t *valid, const double *ages,
                   int64_t b, int64_t e, int64_t cells, int64_t k, double staleness, int64_t *chosen) {
  uint64_t mask[e];    /* each candidate's cells in view, as bits */
  double score[e];     /* -inf: not a candidate, or taken */
  for (int64_t r = 0; r < b; r++) {
    const uint8_t *hit = hits + r * e * cells, *ok = valid + r * e;
    int64_t *out = chosen + r * k, n_valid = 0;
    for (int64_t j = 0; j < e; j++) {
      mask[j] = 0;
      for (int64_t c = 0; c < cells; c++) mask[j] |= (uint64_t)(ok[j] && hit[j * cells + c]) << c;
      score[j] = ok[j] ? seen[r * e + j] - staleness * ages[r * e + j] : -INFINITY;
      n_valid += ok[j] != 0;
    }
    for (int64_t i = 0; i < k; i++) out[i] = -1;
    out[0] = 0;
    uint64_t covered = mask[0];
    score[0] = -INFINITY;
    for (int64_t i = 1; i < k && n_valid > 1; i++) {
      int64_t best = 0;
      double most = 0.0;
      for (int64_t j = 0; j < e; j++) {
        const double gain = (double)__builtin_popcountll(mask[j] & ~covered) + score[j];
        if (j == 0 || gain > most) best = j, most = gain;
      }
      if (!mask[best] || !isfinite(most)) break; /* nothing left that lands in view */
      out[i] = best;
      covered |= mask[best];
      score[best] = -INFINITY;
    }
  }
}
