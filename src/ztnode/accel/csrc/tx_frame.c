/* Frames leaving on a route the node already chose (Python's FrameRoute): the packet is built
 * from the route's header template, sealed (armored, or marked for a trusted path) and cut into
 * the datagrams of its path MTU in one call. The TCP cut (tx_tcp.c) seals each of its pieces
 * the same way. The Python reference is Switch.send_on: new_packet, the fragmented flag, armor
 * or armor_trusted, then split. */
#include "zt_internal.h"

#include <string.h>

/* Whether a route can be sealed here: cipher 1, 3 (with its AES state) or 2 (a trusted path,
 * whose id in the header's MAC field is never 0), and a path MTU a packet head fits. */
int zt_tx_route_ok(const zt_aes_ctx *aes, int cipher, const unsigned char *zthdr, size_t mtu)
{
    if (mtu < 64 || mtu > ZT_ACCEL_MAX_PACKET)
        return 0;
    if (cipher == CIPHER_TRUSTED_PATH)
        return zt_be64(zthdr + IDX_MAC) != 0;
    if (cipher == CIPHER_AES_GMAC_SIV)
        return aes != NULL;
    return cipher == CIPHER_POLY1305_SALSA2012;
}

/* pkt (len bytes, header filled, ID included) is sealed for cipher and appended to out as
 * its datagrams: one when it fits mtu, else the head and fragments 1..n-1. Advances *at and
 * *nout; a negative ZT_TX_* error leaves out unusable. */
int zt_tx_seal(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher, unsigned char *pkt,
               size_t len, size_t mtu, unsigned char *out, size_t out_cap, size_t *at,
               unsigned int *lens, int *nout, int max_out)
{
    size_t frags, k;
    pkt[IDX_FLAGS] = len > mtu ? FLAG_FRAGMENTED : 0;
    if (cipher == CIPHER_TRUSTED_PATH) /* no crypto: the id stays in the MAC field */
        pkt[IDX_FLAGS] |= CIPHER_TRUSTED_PATH << 3;
    else if (zt_armor(aes, salsa_key, pkt, len, cipher) != ZT_ACCEL_OK)
        return ZT_TX_ECRYPTO;
    frags = len <= mtu ? 1 : 1 + (len - mtu + (mtu - FRAG_HEADER) - 1) / (mtu - FRAG_HEADER);
    if (frags > TX_MAX_FRAGMENTS)
        return ZT_TX_EARGS;
    if (*nout + (int)frags > max_out || *at + len + FRAG_HEADER * (frags - 1) > out_cap)
        return ZT_TX_ESPACE;
    if (frags == 1) {
        memcpy(out + *at, pkt, len);
        lens[(*nout)++] = (unsigned int)len;
        *at += len;
        return 0;
    }
    memcpy(out + *at, pkt, mtu);
    lens[(*nout)++] = (unsigned int)mtu;
    *at += mtu;
    for (k = 1; k < frags; k++) {
        size_t start = mtu + (k - 1) * (mtu - FRAG_HEADER);
        size_t m = len - start < mtu - FRAG_HEADER ? len - start : mtu - FRAG_HEADER;
        memcpy(out + *at, pkt, 13);
        out[*at + 13] = FRAG_INDICATOR;
        out[*at + 14] = (unsigned char)((frags << 4) | k);
        out[*at + 15] = 0;
        memcpy(out + *at + FRAG_HEADER, pkt + start, m);
        lens[(*nout)++] = (unsigned int)(FRAG_HEADER + m);
        *at += FRAG_HEADER + m;
    }
    return 0;
}

/* The packet head every send path starts from: the route's header with this packet's ID,
 * then the FRAME's network id and ethertype (IDX_PAYLOAD + 10 bytes). */
void zt_tx_frame_head(unsigned char *pkt, const unsigned char *zthdr, const unsigned char *pid,
                      uint64_t nwid, unsigned int ethertype)
{
    int k;
    memcpy(pkt, zthdr, IDX_PAYLOAD);
    memcpy(pkt, pid, 8);
    for (k = 0; k < 8; k++)
        pkt[IDX_PAYLOAD + k] = (unsigned char)(nwid >> (56 - 8 * k));
    pkt[IDX_PAYLOAD + 8] = (unsigned char)(ethertype >> 8);
    pkt[IDX_PAYLOAD + 9] = (unsigned char)ethertype;
}

int zt_tx_frame(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
                const unsigned char *zthdr, const unsigned char *pid, uint64_t nwid,
                unsigned int ethertype, const unsigned char *payload, size_t payload_len,
                size_t mtu, unsigned char *out, size_t out_cap, unsigned int *lens, int max_out)
{
    unsigned char pkt[ZT_ACCEL_MAX_PACKET];
    size_t len = IDX_PAYLOAD + 10 + payload_len, at = 0;
    int rc, nout = 0;
    if (len > ZT_ACCEL_MAX_PACKET || !zt_tx_route_ok(aes, cipher, zthdr, mtu))
        return ZT_TX_EARGS;
    zt_tx_frame_head(pkt, zthdr, pid, nwid, ethertype);
    if (payload_len) /* payload may be NULL when empty */
        memcpy(pkt + IDX_PAYLOAD + 10, payload, payload_len);
    rc = zt_tx_seal(aes, salsa_key, cipher, pkt, len, mtu, out, out_cap, &at, lens, &nout,
                    max_out);
    return rc < 0 ? rc : nout;
}
