/* Segmentation offload (Linux's GSO): one large TCP segment becomes the armored FRAME datagrams
 * of its MSS-sized pieces in one call. Its Python twin and reference is the netstack's TcpBurst
 * cut followed by the node's armor and fragmentation. */
#include "zt_internal.h"

#include <string.h>

/* hdr: the IP header (20 bytes IPv4 without options, or 40 IPv6) and the TCP header of the
 * first piece, options included; lengths, IPv4 ident and checksums are rewritten per piece.
 * An empty payload makes one piece, the headers alone (a bare ACK or FIN).
 * tcp_flags_last: the flags of the last piece; the others carry them minus PSH and FIN.
 * zthdr: 28 bytes, the packet header with dest, source and verb FRAME (ID, flags, MAC are
 * filled here; for cipher 2, a trusted path, its MAC field holds the path's id, kept as is). pids: 8 random bytes per piece. Writes the datagrams back to back into out,
 * their lengths into lens; returns how many, or a negative ZT_TX_* error (nothing usable). */
int zt_tx_tcp(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
              const unsigned char *zthdr, const unsigned char *pids, size_t npids,
              uint64_t nwid, unsigned int ethertype,
              const unsigned char *hdr, size_t hdr_len, unsigned int ip_id,
              const unsigned char *payload, size_t payload_len, size_t seg_size,
              unsigned int tcp_flags_last, size_t mtu,
              unsigned char *out, size_t out_cap, unsigned int *lens, int max_out)
{
    unsigned char pkt[ZT_ACCEL_MAX_PACKET];
    size_t ihl, thl, pieces, i, at = 0;
    int v6, rc, nout = 0;
    uint32_t seq0;
    if (hdr_len < 40 || seg_size == 0 || !zt_tx_route_ok(aes, cipher, zthdr, mtu))
        return ZT_TX_EARGS;
    v6 = (hdr[0] >> 4) == 6;
    if (!v6 && hdr[0] != 0x45)
        return ZT_TX_EARGS;
    ihl = v6 ? 40 : 20;
    if (hdr_len < ihl + 20)
        return ZT_TX_EARGS;
    thl = (size_t)(hdr[ihl + 12] >> 4) << 2;
    if (thl < 20 || ihl + thl != hdr_len)
        return ZT_TX_EARGS;
    pieces = payload_len ? (payload_len + seg_size - 1) / seg_size : 1; /* a bare ACK or FIN */
    if (pieces > npids || IDX_PAYLOAD + 10 + hdr_len + seg_size > ZT_ACCEL_MAX_PACKET)
        return ZT_TX_EARGS;
    seq0 = zt_be32(hdr + ihl + 4);
    for (i = 0; i < pieces; i++) {
        size_t off = i * seg_size;
        size_t n = payload_len - off < seg_size ? payload_len - off : seg_size;
        size_t tcp_len = thl + n, len = IDX_PAYLOAD + 10 + ihl + tcp_len;
        unsigned char *ip = pkt + IDX_PAYLOAD + 10, *tcp = ip + ihl;
        uint32_t seq = seq0 + (uint32_t)off;
        unsigned int sum, fl;
        zt_tx_frame_head(pkt, zthdr, pids + 8 * i, nwid, ethertype);
        memcpy(ip, hdr, hdr_len);
        if (n) /* payload may be NULL when empty */
            memcpy(tcp + thl, payload + off, n);
        if (v6) {
            ip[4] = (unsigned char)(tcp_len >> 8);
            ip[5] = (unsigned char)tcp_len;
        } else {
            zt_ipv4_fill(ip, (unsigned int)(20 + tcp_len), (ip_id + (unsigned int)i) & 0xffff);
        }
        tcp[4] = (unsigned char)(seq >> 24);
        tcp[5] = (unsigned char)(seq >> 16);
        tcp[6] = (unsigned char)(seq >> 8);
        tcp[7] = (unsigned char)seq;
        fl = i + 1 == pieces ? tcp_flags_last : (tcp_flags_last & ~0x09u);
        tcp[13] = (unsigned char)fl;
        tcp[16] = 0;
        tcp[17] = 0;
        sum = ~zt_ones_sum(tcp, tcp_len, zt_pseudo_sum(v6, v6 ? ip + 8 : ip + 12,
                                                       (unsigned int)tcp_len)) & 0xffff;
        tcp[16] = (unsigned char)(sum >> 8);
        tcp[17] = (unsigned char)sum;
        rc = zt_tx_seal(aes, salsa_key, cipher, pkt, len, mtu, out, out_cap, &at, lens, &nout,
                        max_out);
        if (rc < 0)
            return rc;
    }
    return nout;
}

