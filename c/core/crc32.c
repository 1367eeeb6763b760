/*
 * crc32.c -- table-driven CRC-32, slicing by 8 (see crc32.h).
 *
 * t[0][b] is the CRC register after shifting byte b through it (the classic
 * byte table); t[k][b] = (t[k-1][b] >> 8) ^ t[0][t[k-1][b] & 0xFF] is the same
 * followed by k zero bytes, so 8 input bytes fold into the register with 8
 * lookups.  Bytes are read one by one: the result does not depend on the
 * host's byte order.
 */
#include "crc32.h"

void bptt_crc32_init(bptt_crc32_table *tab) {
  uint32_t b, c;
  int k, j;
  for (b = 0; b < 256; b++) {
    c = b;
    for (j = 0; j < 8; j++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    tab->t[0][b] = c;
  }
  for (b = 0; b < 256; b++)
    for (k = 1; k < 8; k++) tab->t[k][b] = (tab->t[k - 1][b] >> 8) ^ tab->t[0][tab->t[k - 1][b] & 0xFF];
}

uint32_t bptt_crc32_update(const bptt_crc32_table *tab, uint32_t crc, const void *p, size_t n) {
  const unsigned char *s = p;
  const uint32_t(*t)[256] = tab->t;
  crc = ~crc;
  for (; n >= 8; n -= 8, s += 8) {
    uint32_t a = crc ^ ((uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24);
    crc = t[7][a & 0xFF] ^ t[6][(a >> 8) & 0xFF] ^ t[5][(a >> 16) & 0xFF] ^ t[4][a >> 24] ^ t[3][s[4]] ^ t[2][s[5]] ^
          t[1][s[6]] ^ t[0][s[7]];
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *s++) & 0xFF];
  return ~crc;
}
