/*
 * utf8.h -- the library's one UTF-8 codec (RFC 3629; Unicode, table 3-7),
 * shared by the text reader (text.c, which decodes a stream in chunks) and
 * the safetensors header parser (safetensors.c).
 *
 * A lead byte fixes the length of its sequence and the range of the first
 * continuation byte, which rules out overlong forms (E0, F0), surrogates
 * (ED) and values above U+10FFFF (F4) as soon as that byte is seen; the
 * other continuation bytes are 80..BF.
 */
#ifndef BPTT_UTF8_H
#define BPTT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1..4) of the sequence that lead byte c starts, with the range
 * lo..hi of its first continuation byte; 0 if c cannot start one (80..BF, C0,
 * C1, F5..FF). */
static inline int bptt_utf8_lead(unsigned c, unsigned *lo, unsigned *hi) {
  *lo = 0x80, *hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) {
    if (c == 0xE0) *lo = 0xA0; /* E0 80..9F would be overlong */
    if (c == 0xED) *hi = 0x9F; /* ED A0..BF would be a surrogate */
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (c == 0xF0) *lo = 0x90; /* F0 80..8F would be overlong */
    if (c == 0xF4) *hi = 0x8F; /* F4 90.. would pass 10FFFF */
    return 4;
  }
  return 0;
}

/* The length of the valid sequence at s (n >= 1 bytes available), 0 if the
 * bytes there are not one. */
size_t bptt_utf8_len(const unsigned char *s, size_t n);
/* 1 if s[0..len) is valid UTF-8, else 0. */
int bptt_utf8_valid(const char *s, size_t len);
/* Writes code point cp (below 0x110000) to out; returns its length, 1..4. */
int bptt_utf8_put(uint32_t cp, unsigned char out[4]);

#endif
