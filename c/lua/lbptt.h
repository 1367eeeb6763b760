/*
 * lbptt.h -- what the files of the Lua binding share: the tensor userdata,
 * argument checks that raise errors naming the function and the argument,
 * and the default random generator.
 *
 * Error messages read "<function>: <argument> <expected>, got <seen>", e.g.
 * "bptt.matmul: b must have 3 rows to match a (2x3), got 4x2".
 */
#ifndef BPTT_LBPTT_H
#define BPTT_LBPTT_H

#include "compat.h"
#include "rng.h"
#include "tensor.h"
#include "tensor_index.h"
#include "tensor_math.h"

#define BPTT_TENSOR_MT "bptt.Tensor"
#define BPTT_RNG_KEY "bptt.rng.default"

/* The tensor at idx (error if it is not a tensor, or was freed). */
bptt_tensor *bptt_checktensor(lua_State *L, int idx, const char *fn, const char *arg);
/* The tensor at idx, or NULL if it is not a tensor. */
bptt_tensor *bptt_totensor(lua_State *L, int idx);
/* Pushes a new tensor userdata with fresh storage of the given shape;
 * raises a Lua error (naming fn) if the shape overflows or memory runs out. */
bptt_tensor *bptt_newtensor(lua_State *L, const char *fn, int dtype, int ndim, const int64_t *size);
/* Pushes a new tensor userdata that shares src's storage with header *hdr. */
bptt_tensor *bptt_pushview(lua_State *L, const bptt_tensor *hdr);

/* "2x3x4" (or "scalar") into buf. */
const char *bptt_shapestr(const bptt_tensor *t, char *buf, size_t len);
/* The tensor at idx, checked: dtype dt, contiguous, ndim dimensions of the
 * sizes in sz (a size < 0 matches any), else an error naming fn and name;
 * NULL for nil when optional. */
bptt_tensor *bptt_checkarg(lua_State *L, int idx, const char *fn, const char *name, int dt, int optional, int ndim,
                           const int64_t *sz);

/* A number at idx, or an error naming fn and arg ("got string '5'" style). */
double bptt_checknum(lua_State *L, int idx, const char *fn, const char *arg);
/* v in decimal into buf (for messages). */
const char *bptt_i64str(char *buf, size_t len, int64_t v);
/* A whole number within [lo, hi] at idx, or an error naming fn and arg. */
int64_t bptt_checkint(lua_State *L, int idx, const char *fn, const char *arg, int64_t lo, int64_t hi);
/* An optional dtype name at idx (def when none/nil). */
int bptt_optdtype(lua_State *L, int idx, const char *fn, int def);
/* luaL_error with printf's formats (%lld, %g, ...), which lua_pushfstring lacks. */
int bptt_error(lua_State *L, const char *fmt, ...);
/* Raises the error for a core error code, with context. */
int bptt_raise(lua_State *L, int err, const char *fn, const char *what);

/* A dimension argument (1-based; -1 is the last) as 0-based, within
 * ndim + extra dimensions (extra = 1 where a new one may be named, as
 * unsqueeze); bptt_optdim gives def (negative: from the end) for none. */
int bptt_checkdim(lua_State *L, const bptt_tensor *t, int idx, const char *fn, int extra);
int bptt_optdim(lua_State *L, const bptt_tensor *t, int idx, const char *fn, int def);
/* t, or a converted copy of it (pushed) when its dtype is not dtype. */
bptt_tensor *bptt_as_dtype(lua_State *L, bptt_tensor *t, int dtype, const char *fn, const char *arg);
/* Indices at idx (an int32 tensor, a float one of whole numbers, or a Lua
 * list) as an int32 tensor: the argument itself or a copy (pushed). */
bptt_tensor *bptt_checkids(lua_State *L, int idx, const char *fn, const char *arg);

/* The default generator (created on first use; shared by every luaopen). */
bptt_rng *bptt_default_rng(lua_State *L);

/* The module's entry point (exported). */
int luaopen_bptt_core(lua_State *L);

void bptt_open_tensor(lua_State *L); /* into the module table on top */
/* ltensor_math.c, ltensor_index.c: methods into the table on top, and
 * functions into the module table on top */
void bptt_tensor_math_methods(lua_State *L);
void bptt_open_tensor_math(lua_State *L);
void bptt_tensor_index_methods(lua_State *L);
void bptt_open_tensor_index(lua_State *L);
/* Pushes a op b (operands at ia, ib: tensors, or a tensor and a number),
 * broadcast, with PyTorch's dtype promotion (op a bptt_binop). */
bptt_tensor *bptt_push_binop(lua_State *L, const char *fn, int ia, int ib, int op, double alpha);
/* t[k] for a number or table k (a view), and t[k] = v (ltensor_index.c) */
int bptt_tensor_slice_get(lua_State *L);
int bptt_tensor_slice_set(lua_State *L);
void bptt_open_rng(lua_State *L);
void bptt_open_nn(lua_State *L);
void bptt_open_text(lua_State *L);
void bptt_open_optim(lua_State *L);
void bptt_open_sample(lua_State *L);
void bptt_open_io(lua_State *L);

#endif
