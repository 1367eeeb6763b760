/*
 * utf8.c -- validating and encoding UTF-8 (utf8.h).
 */
#include "utf8.h"

size_t bptt_utf8_len(const unsigned char *s, size_t n) {
  unsigned lo, hi;
  size_t len = (size_t)bptt_utf8_lead(s[0], &lo, &hi), i;
  if (len == 0 || n < len) return 0;
  if (len > 1 && (s[1] < lo || s[1] > hi)) return 0;
  for (i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

int bptt_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, k;
  while (i < len) {
    if ((k = bptt_utf8_len(p + i, len - i)) == 0) return 0;
    i += k;
  }
  return 1;
}

int bptt_utf8_put(uint32_t cp, unsigned char o[4]) {
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}
