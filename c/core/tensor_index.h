/*
 * tensor_index.h -- joining, indexing and ordering: cat, index_select,
 * gather, scatter_add, masked_fill, sort, topk, repeat, arange, linspace.
 *
 * Index tensors are int32 and hold 1-based indices (the Lua convention);
 * an index out of range is BPTT_ERANGE, found before anything is written,
 * and *bad (when not NULL) gets its flat 0-based position in the index
 * tensor.  Sources may have any strides; destinations made by the caller
 * may too unless said otherwise.
 */
#ifndef BPTT_TENSOR_INDEX_H
#define BPTT_TENSOR_INDEX_H

#include "tensor.h"

/* out = the n tensors joined along dim: every part has out's shape but for
 * its size along dim, and those sizes add up to out's (dtypes are
 * converted as by bptt_tensor_copy). */
int bptt_tensor_cat(const bptt_tensor *out, const bptt_tensor *const *parts, int n, int dim);

/* out = src's slices ids[0], ids[1], ... along dim (ids 1-d int32);
 * out has src's shape with size numel(ids) along dim. */
int bptt_tensor_index_select(const bptt_tensor *out, const bptt_tensor *src, int dim, const bptt_tensor *ids,
                             int64_t *bad);

/* out[..., j, ...] = src[..., ids[..., j, ...], ...] along dim (PyTorch's
 * gather): ids has src's number of dimensions and sizes no larger than
 * src's except along dim; out has ids's shape and src's dtype. */
int bptt_tensor_gather(const bptt_tensor *out, const bptt_tensor *src, int dim, const bptt_tensor *ids, int64_t *bad);

/* t[..., ids[..., j, ...], ...] += src[..., j, ...] along dim (PyTorch's
 * scatter_add_): ids and src have one shape (sizes no larger than t's but
 * along dim); src has t's dtype.  Repeated indices add up. */
int bptt_tensor_scatter_add(const bptt_tensor *t, int dim, const bptt_tensor *ids, const bptt_tensor *src,
                            int64_t *bad);

/* t[i] = v where mask[i] != 0, mask (any dtype) broadcast to t's shape. */
int bptt_tensor_masked_fill(const bptt_tensor *t, const bptt_tensor *mask, double v);

/* values (src's dtype) and indices (int32, 1-based), both contiguous of
 * src's shape but size k along dim, get src's elements along dim in order:
 * ascending, or descending when desc, stably (equal values keep their
 * order); a NaN counts as larger than everything (last ascending, first
 * descending), as PyTorch.  k = size along dim is a sort, k smaller the
 * first k of it (topk). */
int bptt_tensor_sort(const bptt_tensor *values, const bptt_tensor *indices, const bptt_tensor *src, int dim, int desc,
                     int64_t k);

/* out (contiguous) = src tiled: out's ndim >= src's, and every size of out
 * a multiple of src's (src's shape aligned at the last dimension, missing
 * leading sizes 1), as Torch7's repeatTensor and PyTorch's repeat. */
int bptt_tensor_repeat(const bptt_tensor *out, const bptt_tensor *src);

/* t (1-d) = start, start + step, ...; and n evenly spaced values from
 * start to end (both included), computed as PyTorch's linspace. */
int bptt_tensor_arange(const bptt_tensor *t, double start, double step);
int bptt_tensor_linspace(const bptt_tensor *t, double start, double end);

/* Every element a whole number within int32's range?  Else 0, and *bad =
 * the first other one's flat (row-major, 0-based) position. */
int bptt_tensor_whole(const bptt_tensor *t, int64_t *bad);
/* The storage offset of t's element at flat row-major position pos. */
int64_t bptt_tensor_offset_of(const bptt_tensor *t, int64_t pos);

#endif
