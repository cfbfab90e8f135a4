/* Ones' complement sums (RFC 1071) for IP, UDP and TCP checksums, and the IPv4 header fill:
 * the netstack's checksum module calls zt_ones_sum for buffers of 64 bytes and more; the
 * receive and send engines use these functions for the packets they join, cut and build. */
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

/* An option-less IPv4 header's total length and ident written in, then its header checksum
 * (the send paths build headers so; joined received segments get their new length so). */
void zt_ipv4_fill(unsigned char *ip, unsigned int total, unsigned int id)
{
    unsigned int sum;
    ip[2] = (unsigned char)(total >> 8);
    ip[3] = (unsigned char)total;
    ip[4] = (unsigned char)((id >> 8) & 0xff);
    ip[5] = (unsigned char)id;
    ip[10] = 0;
    ip[11] = 0;
    sum = ~zt_ones_sum(ip, 20, 0) & 0xffff;
    ip[10] = (unsigned char)(sum >> 8);
    ip[11] = (unsigned char)sum;
}
