/*
 * crc32.h -- CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the
 * checksum of zlib, gzip and PNG: zlib.crc32 in Python gives the same value.
 * It catches every single-bit error, every odd number of flipped bits and
 * every burst of up to 32 bits; other damage slips through with odds 2^-32.
 *
 *   bptt_crc32_table tab;
 *   uint32_t crc = 0;
 *   bptt_crc32_init(&tab);
 *   crc = bptt_crc32_update(&tab, crc, p, n);   (as often as needed)
 *
 * The table is a caller's local (8 KB, "slicing by 8": 8 bytes a step), so
 * there is no global state.
 */
#ifndef BPTT_CRC32_H
#define BPTT_CRC32_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t t[8][256];
} bptt_crc32_table;

void bptt_crc32_init(bptt_crc32_table *tab);
/* The CRC of the bytes seen so far (crc; 0 for none) followed by p[0..n). */
uint32_t bptt_crc32_update(const bptt_crc32_table *tab, uint32_t crc, const void *p, size_t n);

#endif
