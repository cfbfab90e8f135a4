/* Checksum offload for UDP: a datagram on a route the node already chose becomes its armored
 * FRAME datagrams in one call, its IP and UDP lengths, IPv4 ident and both checksums filled in
 * here. Its Python twin and reference is the netstack's UdpOffload.packet (the stack's own
 * datagram builder) followed by zt_tx_frame's seal. */
#include "zt_internal.h"

#include <string.h>

#define IPPROTO_UDP_NUMBER 17u

/* hdr: the IP header (20 bytes IPv4 without options, or 40 IPv6) and the 8-byte UDP header,
 * ports set; lengths, the IPv4 ident (ip_id) and the checksums are written here (a UDP sum of
 * 0 is sent as 0xffff, RFC 768). zthdr, pid: as for zt_tx_frame. Returns how many datagrams
 * were written to out (lengths in lens), or a negative ZT_TX_* error (nothing usable). */
int zt_tx_udp(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
              const unsigned char *zthdr, const unsigned char *pid, uint64_t nwid,
              unsigned int ethertype, const unsigned char *hdr, size_t hdr_len,
              unsigned int ip_id, const unsigned char *payload, size_t payload_len, size_t mtu,
              unsigned char *out, size_t out_cap, unsigned int *lens, int max_out)
{
    unsigned char pkt[ZT_ACCEL_MAX_PACKET];
    unsigned char *ip = pkt + IDX_PAYLOAD + 10, *udp;
    size_t ihl, udp_len, len, at = 0;
    unsigned int sum;
    uint64_t pseudo;
    int v6, rc, nout = 0;
    if (hdr_len < 28 || !zt_tx_route_ok(aes, cipher, zthdr, mtu))
        return ZT_TX_EARGS;
    v6 = (hdr[0] >> 4) == 6;
    if (!v6 && hdr[0] != 0x45)
        return ZT_TX_EARGS;
    ihl = v6 ? 40 : 20;
    udp_len = 8 + payload_len;
    if (hdr_len != ihl + 8 || ihl + udp_len > 0xffff)
        return ZT_TX_EARGS;
    len = IDX_PAYLOAD + 10 + ihl + udp_len;
    if (len > ZT_ACCEL_MAX_PACKET)
        return ZT_TX_EARGS;
    zt_tx_frame_head(pkt, zthdr, pid, nwid, ethertype);
    memcpy(ip, hdr, hdr_len);
    udp = ip + ihl;
    if (payload_len) /* payload may be NULL when empty */
        memcpy(udp + 8, payload, payload_len);
    if (v6) {
        ip[4] = (unsigned char)(udp_len >> 8);
        ip[5] = (unsigned char)udp_len;
    } else {
        zt_ipv4_fill(ip, (unsigned int)(20 + udp_len), ip_id & 0xffff);
    }
    udp[4] = (unsigned char)(udp_len >> 8);
    udp[5] = (unsigned char)udp_len;
    udp[6] = 0;
    udp[7] = 0;
    pseudo = (uint64_t)zt_ones_sum(v6 ? ip + 8 : ip + 12, v6 ? 32 : 8, 0) +
             IPPROTO_UDP_NUMBER + udp_len;
    sum = ~zt_ones_sum(udp, udp_len, pseudo) & 0xffff;
    if (sum == 0)
        sum = 0xffff;
    udp[6] = (unsigned char)(sum >> 8);
    udp[7] = (unsigned char)sum;
    rc = zt_tx_seal(aes, salsa_key, cipher, pkt, len, mtu, out, out_cap, &at, lens, &nout,
                    max_out);
    return rc < 0 ? rc : nout;
}
