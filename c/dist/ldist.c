/*
 * ldist.c -- bptt.dist_core: data-parallel collectives over MPI (Open MPI),
 * a module of its own (build/bptt/dist_core.so) so that `require "bptt"`
 * never needs MPI.  lua/bptt/dist.lua loads it and turns a missing MPI into
 * a message saying what to install.
 *
 * MPI is once per process, so its state is too: the two communicators below
 * are duplicates of MPI_COMM_WORLD made by init() (ours, so that a user's own
 * MPI calls never match ours), the second one used only by the exit barrier.
 * Only the thread that loaded the module calls MPI (the library's thread team
 * never does): MPI_THREAD_FUNNELED is the level asked for.  Every call returns
 * MPI's error code (MPI_ERRORS_RETURN on both communicators), turned into a
 * Lua error naming the function.
 *
 * At exit (atexit, which also runs when lua_close unloads the module), a
 * process that initialized MPI and did not call finalize() meets the others
 * at a barrier on its own communicator: if every rank arrives within
 * BPTT_DIST_EXIT_TIMEOUT seconds (30), MPI is finalized; otherwise this rank
 * ended early (an error, say) while others still wait in a collective, and it
 * aborts the job with a message rather than leave them hanging.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32.h"
#include "lbptt.h"

#define REQUEST_MT "bptt.dist.Request"

static MPI_Comm comm = MPI_COMM_NULL, exit_comm = MPI_COMM_NULL;
static int exit_registered = 0;

/* ------------------------------------------------------------ errors */

static int mpi_error(lua_State *L, const char *fn, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
  return luaL_error(L, "%s: MPI failed: %s", fn, msg);
}

#define CHECK(L, fn, call)                                                                                             \
  do {                                                                                                                 \
    int rc_ = (call);                                                                                                  \
    if (rc_ != MPI_SUCCESS) mpi_error(L, fn, rc_);                                                                     \
  } while (0)

static int is_initialized(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin && comm != MPI_COMM_NULL;
}

static void need_init(lua_State *L, const char *fn) {
  if (!is_initialized()) luaL_error(L, "%s: call bptt.dist.init() first", fn);
}

/* ---------------------------------------------------------- exit */

static void exit_handler(void) {
  double timeout = 30, t0;
  const char *s = getenv("BPTT_DIST_EXIT_TIMEOUT");
  MPI_Request req;
  int done = 0, rank = -1;
  if (!is_initialized()) return;
  if (s != NULL && atof(s) > 0) timeout = atof(s);
  MPI_Comm_rank(exit_comm, &rank);
  if (MPI_Ibarrier(exit_comm, &req) == MPI_SUCCESS) {
    t0 = MPI_Wtime();
    while (!done && MPI_Wtime() - t0 < timeout) {
      struct timespec ts = { 0, 1000000 }; /* 1 ms */
      if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
      if (!done) nanosleep(&ts, NULL);
    }
  }
  if (done) {
    MPI_Comm_free(&exit_comm);
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return;
  }
  fprintf(stderr,
          "bptt.dist: rank %d is ending while other ranks are still running (no dist.finalize() on every "
          "rank within %g s): ending the job\n",
          rank, timeout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ---------------------------------------------------------- setup */

/* init() -> rank, size.  Idempotent. */
static int l_init(lua_State *L) {
  const char *fn = "bptt.dist.init";
  int init = 0, fin = 0, provided = 0, rank, size;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (fin) return luaL_error(L, "%s: MPI was finalized (dist.finalize()); it cannot start again in this process", fn);
  if (!init) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return luaL_error(L, "%s: MPI_Init_thread failed (is this run by mpirun, and is Open MPI installed?)", fn);
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      return luaL_error(L, "%s: this MPI gives thread level %d, bptt needs MPI_THREAD_FUNNELED", fn, provided);
    }
  }
  if (comm == MPI_COMM_NULL) {
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    CHECK(L, fn, MPI_Comm_dup(MPI_COMM_WORLD, &comm));
    CHECK(L, fn, MPI_Comm_dup(MPI_COMM_WORLD, &exit_comm));
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(exit_comm, MPI_ERRORS_RETURN);
    if (!exit_registered && atexit(exit_handler) == 0) exit_registered = 1;
  }
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  lua_pushinteger(L, rank);
  lua_pushinteger(L, size);
  return 2;
}

static int l_initialized(lua_State *L) {
  lua_pushboolean(L, is_initialized());
  return 1;
}

/* finalize(): idempotent; collective (every rank calls it). */
static int l_finalize(lua_State *L) {
  if (!is_initialized()) return 0;
  CHECK(L, "bptt.dist.finalize", MPI_Comm_free(&exit_comm));
  CHECK(L, "bptt.dist.finalize", MPI_Comm_free(&comm));
  comm = exit_comm = MPI_COMM_NULL;
  CHECK(L, "bptt.dist.finalize", MPI_Finalize());
  return 0;
}

static int l_rank(lua_State *L) {
  int r;
  need_init(L, "bptt.dist.rank");
  MPI_Comm_rank(comm, &r);
  lua_pushinteger(L, r);
  return 1;
}

static int l_size(lua_State *L) {
  int n;
  need_init(L, "bptt.dist.size");
  MPI_Comm_size(comm, &n);
  lua_pushinteger(L, n);
  return 1;
}

static int l_barrier(lua_State *L) {
  need_init(L, "bptt.dist.barrier");
  CHECK(L, "bptt.dist.barrier", MPI_Barrier(comm));
  return 0;
}

static int l_wtime(lua_State *L) {
  lua_pushnumber(L, MPI_Wtime());
  return 1;
}

/* abort(message, code): message to stderr, then the whole job ends. */
static int l_abort(lua_State *L) {
  const char *msg = luaL_optstring(L, 1, NULL);
  int code = (int)luaL_optinteger(L, 2, 1), init = 0, fin = 0;
  if (msg) {
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
  }
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code); /* not reached under MPI */
}

/* ------------------------------------------------------- tensors */

static MPI_Datatype mpi_type(int dtype) {
  return dtype == BPTT_FLOAT32 ? MPI_FLOAT : dtype == BPTT_FLOAT64 ? MPI_DOUBLE : MPI_INT;
}

/* The contiguous tensor at idx (error naming fn otherwise). */
static bptt_tensor *buffer_arg(lua_State *L, int idx, const char *fn) {
  bptt_tensor *t = bptt_checktensor(L, idx, fn, "t");
  if (!bptt_tensor_is_contiguous(t)) {
    char buf[96];
    luaL_error(L, "%s: t must be contiguous (a %s view with strides; pass t:contiguous() and copy back)", fn,
               bptt_shapestr(t, buf, sizeof buf));
  }
  return t;
}

enum { OP_SUM, OP_MEAN, OP_MAX };

static int op_arg(lua_State *L, int idx, const char *fn, const bptt_tensor *t) {
  const char *op = luaL_optstring(L, idx, "sum");
  if (strcmp(op, "sum") == 0) return OP_SUM;
  if (strcmp(op, "max") == 0) return OP_MAX;
  if (strcmp(op, "mean") == 0) {
    if (t->dtype == BPTT_INT32) luaL_error(L, "%s: op \"mean\" needs a float32 or float64 tensor, t is int32", fn);
    return OP_MEAN;
  }
  return luaL_error(L, "%s: op must be \"sum\", \"mean\" or \"max\", got \"%s\"", fn, op);
}

static void divide(const bptt_tensor *t, int n) {
  int64_t i, len = bptt_tensor_numel(t);
  if (t->dtype == BPTT_FLOAT32) {
    float *p = bptt_tensor_data(t);
    for (i = 0; i < len; i++) p[i] = p[i] / (float)n;
  } else {
    double *p = bptt_tensor_data(t);
    for (i = 0; i < len; i++) p[i] = p[i] / (double)n;
  }
}

#define CHUNK (INT64_C(1) << 30) /* MPI counts are int: larger buffers go in pieces */

/* allreduce(t [, op]): in place, on every rank. */
static int l_allreduce(lua_State *L) {
  const char *fn = "bptt.dist.allreduce";
  bptt_tensor *t = buffer_arg(L, 1, fn);
  int op = op_arg(L, 2, fn, t), n;
  int64_t len = bptt_tensor_numel(t), off;
  size_t es = bptt_dtype_size(t->dtype);
  char *p = bptt_tensor_data(t);
  need_init(L, fn);
  for (off = 0; off < len; off += CHUNK) {
    int cnt = (int)(len - off < CHUNK ? len - off : CHUNK);
    CHECK(L, fn,
          MPI_Allreduce(MPI_IN_PLACE, p + off * (int64_t)es, cnt, mpi_type(t->dtype), op == OP_MAX ? MPI_MAX : MPI_SUM,
                        comm));
  }
  MPI_Comm_size(comm, &n);
  if (op == OP_MEAN && n > 1) divide(t, n);
  lua_settop(L, 1);
  return 1;
}

/* broadcast(t, root): t on every rank becomes root's t. */
static int l_broadcast(lua_State *L) {
  const char *fn = "bptt.dist.broadcast";
  bptt_tensor *t = buffer_arg(L, 1, fn);
  int n;
  int64_t root, len = bptt_tensor_numel(t), off;
  size_t es = bptt_dtype_size(t->dtype);
  char *p = bptt_tensor_data(t);
  need_init(L, fn);
  MPI_Comm_size(comm, &n);
  root = lua_isnoneornil(L, 2) ? 0 : bptt_checkint(L, 2, fn, "root", 0, n - 1);
  for (off = 0; off < len; off += CHUNK) {
    int cnt = (int)(len - off < CHUNK ? len - off : CHUNK);
    CHECK(L, fn, MPI_Bcast(p + off * (int64_t)es, cnt, mpi_type(t->dtype), (int)root, comm));
  }
  lua_settop(L, 1);
  return 1;
}

/* gather(src, dst, root): on root, dst (contiguous, size x src's elements,
 * src's dtype) gets every rank's src in rank order; dst is ignored (may be
 * nil) elsewhere. */
static int l_gather(lua_State *L) {
  const char *fn = "bptt.dist.gather";
  bptt_tensor *src = buffer_arg(L, 1, fn), *dst = NULL;
  int n, rank;
  int64_t root, len = bptt_tensor_numel(src);
  need_init(L, fn);
  MPI_Comm_size(comm, &n);
  MPI_Comm_rank(comm, &rank);
  root = bptt_checkint(L, 3, fn, "root", 0, n - 1);
  if (len * n > CHUNK) return luaL_error(L, "%s: at most 2^30 elements in all", fn);
  if (rank == root) {
    dst = bptt_checktensor(L, 2, fn, "dst");
    if (!bptt_tensor_is_contiguous(dst) || dst->dtype != src->dtype || bptt_tensor_numel(dst) != len * n)
      return luaL_error(L, "%s: dst must be a contiguous %s tensor of %d x %d elements", fn,
                        bptt_dtype_name(src->dtype), n, (int)len);
  }
  CHECK(L, fn,
        MPI_Gather(bptt_tensor_data(src), (int)len, mpi_type(src->dtype), dst ? bptt_tensor_data(dst) : NULL, (int)len,
                   mpi_type(src->dtype), (int)root, comm));
  return 0;
}

/* allgather(s) -> { rank 0's string, rank 1's, ... } (1-based list). */
static int l_allgather(lua_State *L) {
  const char *fn = "bptt.dist.allgather";
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int n, i, mine, total = 0, *counts, *displs;
  char *all;
  need_init(L, fn);
  if (len > (size_t)(1 << 24)) return luaL_error(L, "%s: s must be at most 16 MB", fn);
  MPI_Comm_size(comm, &n);
  /* scratch as userdata: a Lua error below leaks nothing */
  counts = lua_newuserdata(L, sizeof(int) * 2 * (size_t)n);
  displs = counts + n;
  mine = (int)len;
  CHECK(L, fn, MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm));
  for (i = 0; i < n; i++) {
    displs[i] = total;
    total += counts[i];
  }
  all = lua_newuserdata(L, (size_t)total + 1);
  CHECK(L, fn, MPI_Allgatherv(s, mine, MPI_CHAR, all, counts, displs, MPI_CHAR, comm));
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_pushlstring(L, all + displs[i], (size_t)counts[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* checksum(t) -> CRC-32 of t's bytes (a number), to compare across ranks. */
static int l_checksum(lua_State *L) {
  const char *fn = "bptt.dist.checksum";
  bptt_tensor *t = buffer_arg(L, 1, fn);
  bptt_crc32_table *tab = lua_newuserdata(L, sizeof *tab);
  bptt_crc32_init(tab);
  lua_pushnumber(L, (lua_Number)bptt_crc32_update(tab, 0, bptt_tensor_data(t),
                                                  (size_t)bptt_tensor_numel(t) * bptt_dtype_size(t->dtype)));
  return 1;
}

/* offset(flat, t) -> 0-based element offset of contiguous t inside contiguous
 * flat (same storage, same dtype), or nil when t is not a part of flat. */
static int l_offset(lua_State *L) {
  const char *fn = "bptt.dist.offset";
  bptt_tensor *flat = bptt_checktensor(L, 1, fn, "flat"), *t = bptt_checktensor(L, 2, fn, "t");
  int64_t off = t->offset - flat->offset;
  if (t->storage != flat->storage || t->dtype != flat->dtype || !bptt_tensor_is_contiguous(t) ||
      !bptt_tensor_is_contiguous(flat) || off < 0 || off + bptt_tensor_numel(t) > bptt_tensor_numel(flat)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushnumber(L, (lua_Number)off);
  return 1;
}

/* ------------------------------------------------------- requests */

typedef struct {
  MPI_Request req;
  bptt_tensor t; /* a share of the buffer: it lives until the request is done */
  int pending, mean, n;
} request;

static void request_finish(request *r) {
  if (r->mean && r->n > 1) divide(&r->t, r->n);
  r->pending = 0;
  bptt_tensor_release(&r->t);
}

/* iallreduce(t [, op]) -> request: MPI_Iallreduce in place; t must not be
 * read or written until request:wait() (or :test() true). */
static int l_iallreduce(lua_State *L) {
  const char *fn = "bptt.dist.iallreduce";
  bptt_tensor *t = buffer_arg(L, 1, fn);
  int op = op_arg(L, 2, fn, t), rc;
  int64_t len = bptt_tensor_numel(t);
  request *r;
  need_init(L, fn);
  if (len > CHUNK) return luaL_error(L, "%s: t has more than 2^30 elements; use allreduce", fn);
  r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  luaL_getmetatable(L, REQUEST_MT);
  lua_setmetatable(L, -2);
  MPI_Comm_size(comm, &r->n);
  r->mean = op == OP_MEAN;
  rc = MPI_Iallreduce(MPI_IN_PLACE, bptt_tensor_data(t), (int)len, mpi_type(t->dtype), op == OP_MAX ? MPI_MAX : MPI_SUM,
                      comm, &r->req);
  if (rc != MPI_SUCCESS) return mpi_error(L, fn, rc);
  bptt_tensor_share(&r->t, t);
  r->pending = 1;
  return 1;
}

static request *check_request(lua_State *L, const char *fn) {
  request *r = bptt_testudata(L, 1, REQUEST_MT);
  if (r == NULL) luaL_error(L, "%s: self must be a request from bptt.dist.iallreduce", fn);
  return r;
}

/* request:wait(): returns when the all-reduce is done. */
static int req_wait(lua_State *L) {
  const char *fn = "bptt.dist.Request:wait";
  request *r = check_request(L, fn);
  if (r->pending) {
    need_init(L, fn);
    CHECK(L, fn, MPI_Wait(&r->req, MPI_STATUS_IGNORE));
    request_finish(r);
  }
  return 0;
}

/* request:test() -> true when done (MPI makes progress meanwhile). */
static int req_test(lua_State *L) {
  const char *fn = "bptt.dist.Request:test";
  request *r = check_request(L, fn);
  int done = 1;
  if (r->pending) {
    need_init(L, fn);
    CHECK(L, fn, MPI_Test(&r->req, &done, MPI_STATUS_IGNORE));
    if (done) request_finish(r);
  }
  lua_pushboolean(L, done);
  return 1;
}

/* A request collected while pending is waited for (MPI still writes into
 * the buffer); after finalize there is nothing left to wait for. */
static int req_gc(lua_State *L) {
  request *r = bptt_testudata(L, 1, REQUEST_MT);
  if (r && r->pending) {
    if (is_initialized()) MPI_Wait(&r->req, MPI_STATUS_IGNORE);
    r->pending = 0;
    bptt_tensor_release(&r->t);
  }
  return 0;
}

/* progress(): lets MPI advance pending non-blocking operations. */
static int l_progress(lua_State *L) {
  int flag;
  need_init(L, "bptt.dist.progress");
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, MPI_STATUS_IGNORE);
  return 0;
}

static const luaL_Reg request_methods[] = { { "wait", req_wait }, { "test", req_test }, { NULL, NULL } };

static const luaL_Reg functions[] = { { "init", l_init },
                                      { "initialized", l_initialized },
                                      { "finalize", l_finalize },
                                      { "rank", l_rank },
                                      { "size", l_size },
                                      { "barrier", l_barrier },
                                      { "wtime", l_wtime },
                                      { "abort", l_abort },
                                      { "allreduce", l_allreduce },
                                      { "broadcast", l_broadcast },
                                      { "allgather", l_allgather },
                                      { "gather", l_gather },
                                      { "checksum", l_checksum },
                                      { "offset", l_offset },
                                      { "iallreduce", l_iallreduce },
                                      { "progress", l_progress },
                                      { NULL, NULL } };

int luaopen_bptt_dist_core(lua_State *L);
int luaopen_bptt_dist_core(lua_State *L) {
  if (luaL_newmetatable(L, REQUEST_MT)) {
    lua_newtable(L);
    bptt_setfuncs(L, request_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, req_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  bptt_setfuncs(L, functions, 0);
  return 1;
}
