/* Ones' complement sums (RFC 1071) for IP, UDP and TCP checksums: the netstack's checksum
 * module calls zt_ones_sum for buffers of 64 bytes and more; the receive and send engines use
 * both functions for the segments they join or cut. */
#include "zt_internal.h"

/* RFC 1071 sum of big-endian 16-bit words plus `initial`, folded to 0..0xffff (not inverted). */
unsigned int zt_ones_sum(const unsigned char *p, size_t n, uint64_t initial)
{
    uint64_t s = initial;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        s += ((uint64_t)p[i] << 8 | p[i + 1]) + ((uint64_t)p[i + 2] << 8 | p[i + 3]) +
             ((uint64_t)p[i + 4] << 8 | p[i + 5]) + ((uint64_t)p[i + 6] << 8 | p[i + 7]);
    for (; i + 2 <= n; i += 2)
        s += (uint64_t)p[i] << 8 | p[i + 1];
    if (i < n)
        s += (uint64_t)p[i] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (unsigned int)s;
}

uint64_t zt_pseudo_sum(int v6, const unsigned char *addrs, unsigned int tcp_len)
{
    unsigned int alen = v6 ? 32 : 8;
    return (uint64_t)zt_ones_sum(addrs, alen, 0) + 6u + (tcp_len & 0xffff) + (tcp_len >> 16);
}
