/*
 * tensor_index.c -- cat, index_select, gather, scatter_add, masked_fill,
 * sort/topk, repeat, arange, linspace (tensor_index.h).
 *
 * Slices are moved with bptt_tensor_copy on views (any strides, dtype
 * conversion for free); element-wise index work walks an N-d index with
 * offsets kept incrementally.  sort runs per line (tensor_math.h's
 * bptt_tensor_lines, split over the team) on a double copy of the line with
 * a merge sort: stable, NaN ordered as the largest value.
 */
#include "tensor_index.h"

#include <math.h>
#include <string.h>

#include "parallel.h"
#include "tensor_math.h"

/* ------------------------------------------------------------------ cat */

int bptt_tensor_cat(const bptt_tensor *out, const bptt_tensor *const *parts, int n, int dim) {
  int64_t at = 0;
  int i, d, err;
  if (dim < 0 || dim >= out->ndim) return BPTT_EARG;
  for (i = 0; i < n; i++) {
    if (parts[i]->ndim != out->ndim) return BPTT_ESHAPE;
    for (d = 0; d < out->ndim; d++)
      if (d != dim && parts[i]->size[d] != out->size[d]) return BPTT_ESHAPE;
    at += parts[i]->size[dim];
  }
  if (at != out->size[dim]) return BPTT_ESHAPE;
  for (i = 0, at = 0; i < n; i++) {
    bptt_tensor v;
    if (parts[i]->size[dim] == 0) continue;
    bptt_tensor_narrow(&v, out, dim, at, parts[i]->size[dim]);
    err = bptt_tensor_copy(&v, parts[i]);
    bptt_tensor_release(&v);
    if (err) return err;
    at += parts[i]->size[dim];
  }
  return BPTT_OK;
}

/* -------------------------------------------------------------- indices */

/* Checks every index of ids (int32) is in 1..n; *bad = first flat position
 * otherwise.  Returns 0-based indices in a malloc'd array through *out (the
 * caller frees it), row-major over ids. */
static int read_ids(const bptt_tensor *ids, int64_t n, int64_t **out, int64_t *bad) {
  int64_t m = bptt_tensor_numel(ids), i;
  double *tmp;
  bptt_tensor flat;
  int err;
  if (ids->dtype != BPTT_INT32) return BPTT_EDTYPE;
  *out = bptt_malloc((size_t)(m > 0 ? m : 1) * sizeof(int64_t));
  if (*out == NULL) return BPTT_ENOMEM;
  /* a contiguous double copy, read row-major */
  tmp = bptt_malloc((size_t)(m > 0 ? m : 1) * sizeof(double));
  if (tmp == NULL) {
    bptt_free(*out);
    return BPTT_ENOMEM;
  }
  if ((err = bptt_tensor_init(&flat, BPTT_FLOAT64, ids->ndim, ids->size)) != BPTT_OK) {
    bptt_free(tmp), bptt_free(*out);
    return err;
  }
  bptt_tensor_copy(&flat, ids);
  if (m > 0) memcpy(tmp, bptt_tensor_data(&flat), (size_t)m * sizeof(double));
  bptt_tensor_release(&flat);
  for (i = 0; i < m; i++) {
    if (tmp[i] < 1 || tmp[i] > (double)n) {
      if (bad) *bad = i;
      bptt_free(tmp), bptt_free(*out);
      *out = NULL;
      return BPTT_ERANGE;
    }
    (*out)[i] = (int64_t)tmp[i] - 1;
  }
  bptt_free(tmp);
  return BPTT_OK;
}

int bptt_tensor_index_select(const bptt_tensor *out, const bptt_tensor *src, int dim, const bptt_tensor *ids,
                             int64_t *bad) {
  int64_t *ix, m, i;
  int d, err = BPTT_OK;
  if (dim < 0 || dim >= src->ndim || ids->ndim != 1 || out->ndim != src->ndim) return BPTT_EARG;
  m = ids->size[0];
  for (d = 0; d < src->ndim; d++)
    if (out->size[d] != (d == dim ? m : src->size[d])) return BPTT_ESHAPE;
  if ((err = read_ids(ids, src->size[dim], &ix, bad)) != BPTT_OK) return err;
  for (i = 0; i < m && err == BPTT_OK; i++) {
    bptt_tensor a, b;
    bptt_tensor_narrow(&a, out, dim, i, 1);
    bptt_tensor_narrow(&b, src, dim, ix[i], 1);
    err = bptt_tensor_copy(&a, &b);
    bptt_tensor_release(&a);
    bptt_tensor_release(&b);
  }
  bptt_free(ix);
  return err;
}

/* ids's shape fits in src's (t's) but along dim; same ndim */
static int fits(const bptt_tensor *ids, const bptt_tensor *t, int dim) {
  int d;
  if (dim < 0 || dim >= t->ndim || ids->ndim != t->ndim) return 0;
  for (d = 0; d < t->ndim; d++)
    if (d != dim && ids->size[d] > t->size[d]) return 0;
  return 1;
}

/* Calls back for every position of shape (ids's), row-major: the flat
 * position and the offsets (elements) of that position in a and b with
 * their strides (the index along dim included as in ids). */
#define FOR_EACH_POSITION(shape, ...)                                                                                  \
  do {                                                                                                                 \
    int64_t idx_[BPTT_MAXDIM] = { 0 }, pos_, n_ = bptt_tensor_numel(shape);                                            \
    int d_;                                                                                                            \
    for (pos_ = 0; pos_ < n_; pos_++) {                                                                                \
      __VA_ARGS__;                                                                                                     \
      for (d_ = (shape)->ndim - 1; d_ >= 0; d_--) {                                                                    \
        if (++idx_[d_] < (shape)->size[d_]) break;                                                                     \
        idx_[d_] = 0;                                                                                                  \
      }                                                                                                                \
    }                                                                                                                  \
  } while (0)

static int64_t offset_at(const bptt_tensor *t, const int64_t *idx, int dim, int64_t along) {
  int64_t off = t->offset;
  int d;
  for (d = 0; d < t->ndim; d++) off += (d == dim ? along : idx[d]) * t->stride[d];
  return off;
}

int bptt_tensor_gather(const bptt_tensor *out, const bptt_tensor *src, int dim, const bptt_tensor *ids, int64_t *bad) {
  int64_t *ix;
  int err;
  if (!fits(ids, src, dim) || !bptt_tensor_same_shape(out, ids)) return BPTT_ESHAPE;
  if (out->dtype != src->dtype) return BPTT_EDTYPE;
  if ((err = read_ids(ids, src->size[dim], &ix, bad)) != BPTT_OK) return err;
  FOR_EACH_POSITION(ids, {
    double v = bptt_tensor_get(src, offset_at(src, idx_, dim, ix[pos_]));
    bptt_tensor_set(out, offset_at(out, idx_, -1, 0), v);
  });
  bptt_free(ix);
  return BPTT_OK;
}

static int32_t wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

int bptt_tensor_scatter_add(const bptt_tensor *t, int dim, const bptt_tensor *ids, const bptt_tensor *src,
                            int64_t *bad) {
  int64_t *ix;
  bptt_tensor tmp;
  const bptt_tensor *s = src;
  int err, copied = 0;
  if (!fits(ids, t, dim) || !bptt_tensor_same_shape(src, ids)) return BPTT_ESHAPE;
  if (src->dtype != t->dtype) return BPTT_EDTYPE;
  if ((err = read_ids(ids, t->size[dim], &ix, bad)) != BPTT_OK) return err;
  if (src->storage == t->storage) { /* read src from a copy */
    if ((err = bptt_tensor_init(&tmp, src->dtype, src->ndim, src->size)) != BPTT_OK) {
      bptt_free(ix);
      return err;
    }
    bptt_tensor_copy(&tmp, src);
    s = &tmp, copied = 1;
  }
  FOR_EACH_POSITION(ids, {
    int64_t o = offset_at(t, idx_, dim, ix[pos_]);
    double v = bptt_tensor_get(s, offset_at(s, idx_, -1, 0));
    if (t->dtype == BPTT_FLOAT32)
      ((float *)t->storage->data)[o] += (float)v;
    else if (t->dtype == BPTT_FLOAT64)
      ((double *)t->storage->data)[o] += v;
    else
      ((int32_t *)t->storage->data)[o] = wrap32((int64_t)((int32_t *)t->storage->data)[o] + (int64_t)v);
  });
  if (copied) bptt_tensor_release(&tmp);
  bptt_free(ix);
  return BPTT_OK;
}

int bptt_tensor_masked_fill(const bptt_tensor *t, const bptt_tensor *mask, double v) {
  bptt_tensor m;
  int err;
  if (t->dtype == BPTT_INT32 && !(v == floor(v) && fabs(v) < 2147483648.0)) return BPTT_EDTYPE;
  if ((err = bptt_tensor_expand(&m, mask, t->ndim, t->size)) != BPTT_OK) return err;
  FOR_EACH_POSITION(t, {
    if (bptt_tensor_get(&m, offset_at(&m, idx_, -1, 0)) != 0) bptt_tensor_set(t, offset_at(t, idx_, -1, 0), v);
  });
  bptt_tensor_release(&m);
  return BPTT_OK;
}

/* ------------------------------------------------------------- sort, topk */

typedef struct {
  const bptt_tensor *src, *values, *indices;
  int dim, desc;
  int64_t k;
} sort_job;

/* a goes before b (a stable merge keeps equal keys in order) */
static int before(double a, double b, int desc) {
  if (a != a) return desc && b == b; /* NaN is the largest */
  if (b != b) return !desc;
  return desc ? a > b : a < b;
}

static void merge_sort(double *v, int32_t *ix, double *tv, int32_t *ti, int64_t n, int desc) {
  int64_t w, lo, i, j, o;
  for (w = 1; w < n; w *= 2) {
    for (lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      for (i = lo, j = mid, o = lo; o < hi; o++) {
        if (i < mid && (j >= hi || !before(v[j], v[i], desc)))
          tv[o] = v[i], ti[o] = ix[i++];
        else
          tv[o] = v[j], ti[o] = ix[j++];
      }
    }
    memcpy(v, tv, (size_t)n * sizeof *v);
    memcpy(ix, ti, (size_t)n * sizeof *ix);
  }
}

static int sort_line(void *ctx, int tid, int64_t i, int64_t off, int64_t unused) {
  const sort_job *S = ctx;
  int64_t n = S->src->size[S->dim], k, ooff, m = n > 0 ? n : 1;
  char *buf = bptt_parallel_scratch(tid, (size_t)m * 2 * (sizeof(double) + sizeof(int32_t)));
  double *v = (double *)(void *)buf, *tv = v + m;
  int32_t *ix = (int32_t *)(void *)(tv + m), *ti = ix + m;
  (void)unused;
  if (buf == NULL) return BPTT_ENOMEM;
  bptt_line_load(S->src, off, S->src->stride[S->dim], n, v);
  for (k = 0; k < n; k++) ix[k] = (int32_t)(k + 1);
  merge_sort(v, ix, tv, ti, n, S->desc);
  /* the outputs are contiguous: line i of values starts at i's position in
   * the outer shape, with stride along dim */
  {
    int64_t rest = i, stride = S->values->stride[S->dim], d;
    ooff = 0;
    for (d = S->values->ndim - 1; d >= 0; d--) {
      if (d == S->dim) continue;
      ooff += (rest % S->values->size[d]) * S->values->stride[d];
      rest /= S->values->size[d];
    }
    bptt_line_store(S->values, S->values->offset + ooff, stride, S->k, v);
    for (k = 0; k < S->k; k++) tv[k] = ix[k];
    bptt_line_store(S->indices, S->indices->offset + ooff, stride, S->k, tv);
  }
  return BPTT_OK;
}

int bptt_tensor_sort(const bptt_tensor *values, const bptt_tensor *indices, const bptt_tensor *src, int dim, int desc,
                     int64_t k) {
  sort_job S;
  int d;
  if (dim < 0 || dim >= src->ndim || k < 0 || k > src->size[dim]) return BPTT_EARG;
  if (src->size[dim] > INT32_MAX) return BPTT_EOVERFLOW;
  if (values->dtype != src->dtype || indices->dtype != BPTT_INT32) return BPTT_EDTYPE;
  if (values->ndim != src->ndim || !bptt_tensor_same_shape(values, indices) || !bptt_tensor_is_contiguous(values) ||
      !bptt_tensor_is_contiguous(indices))
    return BPTT_ESHAPE;
  for (d = 0; d < src->ndim; d++)
    if (values->size[d] != (d == dim ? k : src->size[d])) return BPTT_ESHAPE;
  S.src = src, S.values = values, S.indices = indices, S.dim = dim, S.desc = desc, S.k = k;
  return bptt_tensor_lines(src, NULL, dim, sort_line, &S);
}

/* ---------------------------------------------------------------- repeat */

int bptt_tensor_repeat(const bptt_tensor *out, const bptt_tensor *src) {
  int d, lead;
  if (out->ndim < src->ndim || !bptt_tensor_is_contiguous(out)) return BPTT_ESHAPE;
  lead = out->ndim - src->ndim;
  for (d = 0; d < src->ndim; d++) {
    int64_t s = src->size[d], o = out->size[d + lead];
    if (s == 0 ? o != 0 : o % s != 0) return BPTT_ESHAPE;
  }
  FOR_EACH_POSITION(out, {
    int64_t so = src->offset;
    for (d = 0; d < src->ndim; d++) so += (idx_[d + lead] % src->size[d]) * src->stride[d];
    bptt_tensor_set(out, out->offset + pos_, bptt_tensor_get(src, so));
  });
  return BPTT_OK;
}

int bptt_tensor_whole(const bptt_tensor *t, int64_t *bad) {
  int ok = 1;
  if (t->dtype == BPTT_INT32) return 1;
  FOR_EACH_POSITION(t, {
    double v = bptt_tensor_get(t, offset_at(t, idx_, -1, 0));
    if (ok && !(v == floor(v) && v >= -2147483648.0 && v <= 2147483647.0)) ok = 0, *bad = pos_;
  });
  return ok;
}

int64_t bptt_tensor_offset_of(const bptt_tensor *t, int64_t pos) {
  int64_t off = t->offset;
  int d;
  for (d = t->ndim - 1; d >= 0; d--) {
    off += (pos % t->size[d]) * t->stride[d];
    pos /= t->size[d];
  }
  return off;
}

/* -------------------------------------------------------- arange, linspace */

int bptt_tensor_arange(const bptt_tensor *t, double start, double step) {
  int64_t i, n;
  if (t->ndim != 1) return BPTT_EARG;
  n = t->size[0];
  for (i = 0; i < n; i++) bptt_tensor_set(t, t->offset + i * t->stride[0], start + (double)i * step);
  return BPTT_OK;
}

/* PyTorch's: the first half counts up from start, the second down from
 * end, so both ends come out exact. */
int bptt_tensor_linspace(const bptt_tensor *t, double start, double end) {
  int64_t i, n;
  double step;
  if (t->ndim != 1) return BPTT_EARG;
  n = t->size[0];
  if (n == 1) {
    bptt_tensor_set(t, t->offset, start);
    return BPTT_OK;
  }
  step = (end - start) / (double)(n - 1);
  for (i = 0; i < n; i++) {
    double v = i < n / 2 ? start + step * (double)i : end - step * (double)(n - 1 - i);
    bptt_tensor_set(t, t->offset + i * t->stride[0], v);
  }
  return BPTT_OK;
}
