/*
 * generic/rnn_jacobian.c -- the recurrent layer's state-map Jacobians (rnn.h's
 * bptt_rnn_jvp, bptt_rnn_vjp, bptt_rnn_jacobian_exact), written once over
 * `real` and instantiated by generic.h after generic/rnn_bptt.c, in the same
 * translation unit (rnn.c): the vector-Jacobian product reuses that file's
 * per-step backward passes.  bptt.jacobian_norms (lua/bptt/jacobian.lua)
 * runs its power iteration on them.
 */

/* ---- Jacobians of the state map (rnn.h's bptt_rnn_jvp / _vjp) ------------
 * J_t = ds_t/ds_{t-1} at step t of a forward without checkpointing, s = h
 * (tanh, relu, gru) or (h, c) (lstm), each row of the batch on its own.
 * VJP: one step of the backward recursion with dy = 0 (the same passes).
 * JVP, with da = v_h W_hh^T (B, GH) and the cached activations:
 *   tanh  v_h <- (1 - h_t^2) da          relu  v_h <- [h_t > 0] da
 *   lstm  di = i(1-i) da_i, df = f(1-f) da_f, dg = (1-g^2) da_g, do = o(1-o) da_o
 *         v_c <- df c_{t-1} + f v_c + di g + i dg
 *         v_h <- do tanh(c_t) + o (1 - tanh^2 c_t) v_c
 *   gru   dr = r(1-r) da_r, dz = z(1-z) da_z, dn = (1-n^2)(dr hn + r da_n)
 *         v_h <- (1-z) dn + dz (h_{t-1} - n) + z v_h
 * On the calling thread; work: B*GH + B*H reals. */
static int FN(jac_check)(const bptt_rnn_dims *d, const real *w_hh, const real *y, const real *cache, int64_t t0,
                         int64_t t1, const real *vh, const real *vc, const real *work) {
  int err = bptt_rnn_check_dims(d);
  if (err) return err;
  if (!w_hh || !y || !vh || !work || t0 < 0 || t1 > d->T || t0 > t1) return BPTT_EARG;
  if ((d->cell == BPTT_CELL_LSTM || d->cell == BPTT_CELL_GRU) && !cache) return BPTT_EARG;
  if (d->cell == BPTT_CELL_LSTM && !vc) return BPTT_EARG;
  return BPTT_OK;
}

int FN(bptt_rnn_jvp)(const bptt_rnn_dims *d, const real *w_hh, const real *h0, const real *c0, const real *y,
                     const real *cache, int64_t t0, int64_t t1, real *vh, real *vc, real *work) {
  const int64_t B = d ? d->B : 0, H = d ? d->H : 0, BH = B * H;
  const int64_t GH = d ? bptt_cell_gates(d->cell) * H : 0, T = d ? d->T : 0;
  int64_t t, b, j;
  int err = FN(jac_check)(d, w_hh, y, cache, t0, t1, vh, vc, work);
  if (err) return err;
  for (t = t0; t < t1; t++) {
    const real *hp = t ? y + (t - 1) * BH : h0;
    FN(gemm)(0, 1, B, GH, H, 1, vh, H, w_hh, H, 0, work, GH); /* da */
    for (b = 0; b < B; b++) {
      const real *da = work + b * GH;
      real *v = vh + b * H;
      switch (d->cell) {
        case BPTT_CELL_LSTM: {
          const real *g = cache + (t * B + b) * GH, *ct = cache + T * B * GH + t * BH + b * H;
          const real *cp = t ? ct - BH : c0 ? c0 + b * H : NULL;
          real *w = vc + b * H;
          for (j = 0; j < H; j++) {
            real i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j], tc = TANH(ct[j]);
            real di = i * (1 - i) * da[j], df = f * (1 - f) * da[H + j];
            real dg = (1 - gg * gg) * da[2 * H + j], dov = o * (1 - o) * da[3 * H + j];
            real dc = (cp ? df * cp[j] : (real)0) + f * w[j] + di * gg + i * dg;
            w[j] = dc;
            v[j] = dov * tc + o * (1 - tc * tc) * dc;
          }
          break;
        }
        case BPTT_CELL_GRU: {
          const real *g = cache + (t * B + b) * GH, *hn = cache + T * B * GH + t * BH + b * H;
          for (j = 0; j < H; j++) {
            real r = g[j], z = g[H + j], n = g[2 * H + j];
            real dr = r * (1 - r) * da[j], dz = z * (1 - z) * da[H + j];
            real dn = (1 - n * n) * (dr * hn[j] + r * da[2 * H + j]);
            v[j] = (1 - z) * dn + dz * ((hp ? hp[b * H + j] : (real)0) - n) + z * v[j];
          }
          break;
        }
        default: {
          const real *h = y + t * BH + b * H;
          for (j = 0; j < H; j++)
            v[j] = d->cell == BPTT_CELL_RELU ? (h[j] <= 0 ? (real)0 : da[j]) : (1 - h[j] * h[j]) * da[j];
          break;
        }
      }
    }
  }
  return BPTT_OK;
}

int FN(bptt_rnn_vjp)(const bptt_rnn_dims *d, const real *w_hh, const real *h0, const real *c0, const real *y,
                     const real *cache, int64_t t0, int64_t t1, real *vh, real *vc, real *work) {
  const int64_t B = d ? d->B : 0, H = d ? d->H : 0, BH = B * H;
  const int64_t GH = d ? bptt_cell_gates(d->cell) * H : 0, T = d ? d->T : 0;
  int64_t t;
  int err = FN(jac_check)(d, w_hh, y, cache, t0, t1, vh, vc, work);
  if (err) return err;
  for (t = t1 - 1; t >= t0; t--) {
    real beta = 0;
    switch (d->cell) {
      case BPTT_CELL_LSTM: {
        const real *ct = cache + T * B * GH + t * BH;
        FN(lstm_bstep)(B, H, 0, H, cache + t * B * GH, ct, t ? ct - BH : c0, NULL, vh, vc, work);
        break;
      }
      case BPTT_CELL_GRU:
        FN(gru_bstep)(B, H, 0, H, cache + t * B * GH, cache + T * B * GH + t * BH, t ? y + (t - 1) * BH : h0, NULL, vh,
                      work, work + B * GH);
        beta = 1;
        break;
      default:
        FN(elman_bstep)(B, H, 0, H, d->cell == BPTT_CELL_RELU, y + t * BH, NULL, vh, work);
        break;
    }
    FN(gemm)(0, 0, B, H, GH, 1, work, GH, w_hh, H, beta, vh, H);
  }
  return BPTT_OK;
}

/* tanh and relu: the exact products P_tau = J_{t1-1} ... J_{t1-tau}, J_t =
 * diag(f'(a_t)) W_hh for each batch row, formed in double, and out[tau-1] =
 * max over the rows of ||P_tau||_2 (the largest eigenvalue of P^T P, by
 * Jacobi's method: rnn.c's sym_max_eig), tau = 1..nlag <= t1.  work: 3*H*H
 * doubles. */
int FN(bptt_rnn_jacobian_exact)(const bptt_rnn_dims *d, const real *w_hh, const real *y, int64_t t1, int64_t nlag,
                                double *out, double *work) {
  int err = bptt_rnn_check_dims(d);
  int64_t H, B, b, tau, i, j, l;
  double *P, *Q, *A;
  if (err) return err;
  if (d->cell != BPTT_CELL_TANH && d->cell != BPTT_CELL_RELU) return BPTT_EARG;
  if (!w_hh || !y || !out || !work || t1 < 1 || t1 > d->T || nlag < 1 || nlag > t1) return BPTT_EARG;
  H = d->H, B = d->B;
  P = work, Q = work + H * H, A = work + 2 * H * H;
  for (tau = 0; tau < nlag; tau++) out[tau] = 0;
  for (b = 0; b < B; b++) {
    for (i = 0; i < H * H; i++) P[i] = i % (H + 1) == 0; /* identity */
    for (tau = 1; tau <= nlag; tau++) {
      const real *h = y + ((t1 - tau) * B + b) * H; /* h_t of step t = t1 - tau */
      double s;
      /* Q = P J_t = P diag(f') W_hh */
      for (i = 0; i < H; i++)
        for (j = 0; j < H; j++) {
          double acc = 0;
          for (l = 0; l < H; l++) {
            double fp = d->cell == BPTT_CELL_RELU ? (h[l] > 0 ? 1.0 : 0.0) : 1.0 - (double)h[l] * (double)h[l];
            acc += P[i * H + l] * fp * (double)w_hh[l * H + j];
          }
          Q[i * H + j] = acc;
        }
      memcpy(P, Q, (size_t)(H * H) * sizeof(double));
      /* A = P^T P */
      for (i = 0; i < H; i++)
        for (j = 0; j < H; j++) {
          double acc = 0;
          for (l = 0; l < H; l++) acc += P[l * H + i] * P[l * H + j];
          A[i * H + j] = acc;
        }
      s = sqrt(sym_max_eig(H, A));
      if (s > out[tau - 1]) out[tau - 1] = s;
    }
  }
  return BPTT_OK;
}
