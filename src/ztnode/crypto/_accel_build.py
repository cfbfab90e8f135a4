"""cffi (API mode) builder for ``ztnode.crypto._zt_accel``, the optional packet-armor accelerator.

Why it exists: armoring a packet is a handful of cheap C calls (a GMAC, one AES block, a CTR pass;
or a Salsa20/12 stream and a Poly1305), and in pure Python the glue between them (slicing the
header, folding tags, placing them) costs about as much again as the cryptography itself. This
module compiles that whole per-packet sequence for ciphers 0, 1 and 3 into two C functions, so
``ztnode.wire.packet.armor`` / ``dearmor`` become one foreign call each. The pure-Python path in
``ztnode.wire.packet`` stays the reference implementation and the fallback.

The file is self-contained (no ``ztnode`` imports) because ``setup.py`` hands it to cffi's
``cffi_modules`` hook, which executes it on its own at build time. Compile it by hand with
``python src/ztnode/crypto/_accel_build.py`` (writes the extension next to this file).

C-side rules: no global mutable state (every bit of per-key state lives in a ``zt_aes_ctx`` the
caller owns); every length is checked before any byte is written; an error return (bad length,
cipher or missing key state) leaves the packet exactly as it was, so the caller can rerun the
Python path and get its exact behaviour. The one exception is an OpenSSL failure in the middle of
an AES-CTR pass, which OpenSSL does not produce for in-range lengths on an initialised context.

A hand build is named for this interpreter (``_zt_accel.cpython-311-*.so``) and so takes
precedence over the ``abi3`` file pip builds; delete it to go back to the installed one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import cffi  # type: ignore[import-untyped]

MODULE_NAME = "ztnode.crypto._zt_accel"

# The burst records and counters, declared once for both cdef and source (cffi needs the
# layout in each; ztnode.transport.burst reads a record as twelve native uint64s).
RX_TYPES = """
typedef struct {
    uint64_t kind;
    uint64_t off;
    uint64_t len;
    uint64_t pieces;
    uint64_t frames;
    uint64_t wire_bytes;
    uint64_t src;
    uint64_t family;
    uint64_t port;
    uint64_t ip_hi;
    uint64_t ip_lo;
    uint64_t scope;
} zt_rx_rec;

typedef struct {
    uint64_t datagrams;
    uint64_t bursts;
    uint64_t reassembled;
    uint64_t decrypted;
    uint64_t mac_failed;
    uint64_t coalesced;
    uint64_t truncated;
} zt_rx_stats;
"""

# What Python sees. The return codes are part of the contract with ztnode.crypto.accel.
CDEF = (
    """
#define ZT_ACCEL_ABI ...
#define ZT_ACCEL_OK ...
#define ZT_ACCEL_AUTHENTIC ...
#define ZT_ACCEL_NOT_AUTHENTIC ...
#define ZT_ACCEL_ELENGTH ...
#define ZT_ACCEL_ECIPHER ...
#define ZT_ACCEL_ENOKEY ...
#define ZT_ACCEL_ECRYPTO ...
#define ZT_ACCEL_MIN_PACKET ...
#define ZT_ACCEL_MAX_PACKET ...

typedef struct zt_aes_ctx zt_aes_ctx;

int zt_accel_init(void);
zt_aes_ctx *zt_aes_new(const unsigned char *k0, const unsigned char *k1);
void zt_aes_free(zt_aes_ctx *aes);

int zt_armor(zt_aes_ctx *aes, const unsigned char *salsa_key,
             unsigned char *pkt, size_t len, int cipher);
int zt_dearmor(zt_aes_ctx *aes, const unsigned char *salsa_key,
               unsigned char *pkt, size_t len);

#define ZT_RX_MAX_DGRAMS ...
#define ZT_RX_SLOT ...
#define ZT_RX_ARENA ...
#define ZT_RX_DATAGRAM ...
#define ZT_RX_WHOLE ...
#define ZT_RX_PLAIN ...
#define ZT_RX_TRUNCATED ...
#define ZT_RX_EUNSUPPORTED ...
#define ZT_RX_EARGS ...

"""
    + RX_TYPES
    + """
typedef struct zt_rx zt_rx;

unsigned int zt_ones_sum(const unsigned char *p, size_t n, uint64_t initial);
int zt_rx_supported(void);
zt_rx *zt_rx_new(uint64_t self_addr);
void zt_rx_free(zt_rx *rx);
zt_rx_stats *zt_rx_get_stats(zt_rx *rx);
int zt_rx_set_peer(zt_rx *rx, uint64_t addr, zt_aes_ctx *aes, const unsigned char *salsa_key);
void zt_rx_forget(zt_rx *rx, uint64_t addr);
int zt_rx_set_networks(zt_rx *rx, const uint64_t *nwids, int n);
int zt_rx_burst(zt_rx *rx, int fd, unsigned char *arena, size_t arena_len, zt_rx_rec *recs,
                int max_recs, int max_dgrams, int gro);

#define ZT_TX_EARGS ...
#define ZT_TX_ESPACE ...
#define ZT_TX_ECRYPTO ...
int zt_tx_tcp(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
              const unsigned char *zthdr, const unsigned char *pids, size_t npids,
              uint64_t nwid, unsigned int ethertype,
              const unsigned char *hdr, size_t hdr_len, unsigned int ip_id,
              const unsigned char *payload, size_t payload_len, size_t seg_size,
              unsigned int tcp_flags_last, size_t mtu,
              unsigned char *out, size_t out_cap, unsigned int *lens, int max_out);
"""
)

C_SOURCE = (
    r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* recvmmsg */
#endif
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <errno.h>
#include <stdlib.h>
#ifdef __linux__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

/* Bumped whenever the functions below change meaning, so a stale build is never used. */
#define ZT_ACCEL_ABI 2

/* Return codes. Armor: OK or an error. Dearmor: AUTHENTIC / NOT_AUTHENTIC or an error. Every
 * error except ECRYPTO from inside a CTR pass is returned before the packet is touched. */
#define ZT_ACCEL_OK 0
#define ZT_ACCEL_AUTHENTIC 1
#define ZT_ACCEL_NOT_AUTHENTIC 0
#define ZT_ACCEL_ELENGTH (-1)  /* outside MIN..MAX_PACKET */
#define ZT_ACCEL_ECIPHER (-2)  /* armor: a suite other than 0, 1, 3 */
#define ZT_ACCEL_ENOKEY (-3)   /* cipher 3 but no AES context given: build one and call again */
#define ZT_ACCEL_ECRYPTO (-4)  /* an OpenSSL call failed (allocation); the packet is unchanged */

/* Packet layout (ZeroTier 1.x header): id/iv 0..7, dest 8..12, source 13..17, flags 18,
 * MAC 19..26, verb and payload from 27. MAX is the reassembly buffer size (MTU x 7 fragments). */
#define ZT_ACCEL_MIN_PACKET 28
#define ZT_ACCEL_MAX_PACKET 10024
#define IDX_DEST 8
#define IDX_FLAGS 18
#define IDX_MAC 19
#define IDX_VERB 27

/* Flags byte FFCCCHHH. Hops (low 3 bits) change in transit, so they are never authenticated;
 * the fragment flag and hops survive a cipher change; 0x80 is the legacy "encrypted" bit, set
 * iff the suite is 1. */
#define FLAGS_AUTH_MASK 0xf8
#define FLAGS_KEEP_MASK 0x47
#define FLAGS_CIPHER_MASK 0x38
#define FLAGS_CIPHER_0 0x00
#define FLAGS_CIPHER_1 0x88
#define FLAGS_CIPHER_3 0x18

#define CIPHER_POLY1305_NONE 0
#define CIPHER_POLY1305_SALSA2012 1
#define CIPHER_AES_GMAC_SIV 3

#define SALSA_KEY_BYTES 32
#define SALSA_BLOCK 64
#define MAC_BYTES 8

/* libsodium picks its fastest Poly1305 implementation in sodium_init (idempotent, thread-safe);
 * without it the portable one is used. -1 means libsodium is unusable. */
int zt_accel_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Ciphers 0 and 1: Salsa20/12 + Poly1305 with a per-packet mangled key.                       */

/* The per-packet key: the session key XORed with packet ID, both addresses, the flags without
 * hops and the total length. Binding the key to the header is what authenticates the header,
 * since the MAC itself only covers bytes 27 onwards. */
static void zt_mangle_key(unsigned char mk[SALSA_KEY_BYTES], const unsigned char *key,
                          const unsigned char *pkt, size_t len)
{
    size_t i;
    for (i = 0; i < IDX_FLAGS; i++)
        mk[i] = key[i] ^ pkt[i];
    mk[18] = key[18] ^ (unsigned char)(pkt[IDX_FLAGS] & FLAGS_AUTH_MASK);
    mk[19] = key[19] ^ (unsigned char)(len & 0xff);
    mk[20] = key[20] ^ (unsigned char)((len >> 8) & 0xff);
    memcpy(mk + 21, key + 21, SALSA_KEY_BYTES - 21);
}

/* Salsa20/12 keystream block ``counter`` for nonce = packet ID. libsodium has no salsa2012
 * stream with a start counter, and ZeroTier needs block 0 (Poly1305 key) separately from blocks
 * 1.. (payload), so blocks are made one at a time with the core function, exactly as libsodium's
 * own salsa2012 stream does internally. */
static void zt_salsa_block(unsigned char out[SALSA_BLOCK], const unsigned char *nonce8,
                           uint64_t counter, const unsigned char mk[SALSA_KEY_BYTES])
{
    unsigned char in[16];
    int i;
    memcpy(in, nonce8, 8);
    for (i = 0; i < 8; i++)
        in[8 + i] = (unsigned char)(counter >> (8 * i)); /* little-endian block counter */
    crypto_core_salsa2012(out, in, mk, NULL);
}

/* XOR the keystream from byte 64 (block 1) into buf; its own inverse. */
static void zt_salsa_xor_from_block1(unsigned char *buf, size_t n, const unsigned char *nonce8,
                                     const unsigned char mk[SALSA_KEY_BYTES])
{
    unsigned char ks[SALSA_BLOCK];
    uint64_t counter = 1;
    size_t off = 0, i, take;
    while (off < n) {
        zt_salsa_block(ks, nonce8, counter++, mk);
        take = n - off < SALSA_BLOCK ? n - off : SALSA_BLOCK;
        for (i = 0; i < take; i++)
            buf[off + i] ^= ks[i];
        off += take;
    }
    sodium_memzero(ks, sizeof ks);
}

static void zt_armor_salsa(const unsigned char *salsa_key, unsigned char *pkt, size_t len,
                           int encrypt)
{
    unsigned char mk[SALSA_KEY_BYTES], block0[SALSA_BLOCK], tag[16];
    zt_mangle_key(mk, salsa_key, pkt, len);
    zt_salsa_block(block0, pkt, 0, mk);
    if (encrypt)
        zt_salsa_xor_from_block1(pkt + IDX_VERB, len - IDX_VERB, pkt, mk);
    /* The MAC covers what goes on the wire: ciphertext for suite 1, plaintext for suite 0. */
    crypto_onetimeauth_poly1305(tag, pkt + IDX_VERB, len - IDX_VERB, block0);
    memcpy(pkt + IDX_MAC, tag, MAC_BYTES);
    sodium_memzero(mk, sizeof mk);
    sodium_memzero(block0, sizeof block0);
}

static int zt_dearmor_salsa(const unsigned char *salsa_key, unsigned char *pkt, size_t len,
                            int decrypt)
{
    unsigned char mk[SALSA_KEY_BYTES], block0[SALSA_BLOCK], tag[16];
    int ok;
    zt_mangle_key(mk, salsa_key, pkt, len);
    zt_salsa_block(block0, pkt, 0, mk);
    crypto_onetimeauth_poly1305(tag, pkt + IDX_VERB, len - IDX_VERB, block0);
    /* Constant time, and nothing is decrypted unless the MAC matches: a rejected packet is
     * returned untouched. */
    ok = sodium_memcmp(tag, pkt + IDX_MAC, MAC_BYTES) == 0;
    if (ok && decrypt)
        zt_salsa_xor_from_block1(pkt + IDX_VERB, len - IDX_VERB, pkt, mk);
    sodium_memzero(mk, sizeof mk);
    sodium_memzero(block0, sizeof block0);
    return ok ? ZT_ACCEL_AUTHENTIC : ZT_ACCEL_NOT_AUTHENTIC;
}

/* ------------------------------------------------------------------------------------------ */
/* Cipher 3: AES-GMAC-SIV.                                                                      */

/* One key schedule per context, made once per peer key: per packet only IVs are loaded, which
 * is what makes a packet cost a few hundred nanoseconds of OpenSSL instead of microseconds. */
typedef struct zt_aes_ctx zt_aes_ctx;
struct zt_aes_ctx {
    EVP_CIPHER_CTX *gmac;    /* AES-256-GCM under K0, used with an empty plaintext = GMAC */
    EVP_CIPHER_CTX *ecb_enc; /* AES-256-ECB under K1, one block, padding off */
    EVP_CIPHER_CTX *ecb_dec;
    EVP_CIPHER_CTX *ctr;     /* AES-256-CTR under K1, new IV per packet */
};

void zt_aes_free(zt_aes_ctx *aes)
{
    if (aes == NULL)
        return;
    /* EVP_CIPHER_CTX_free wipes the key schedules. */
    EVP_CIPHER_CTX_free(aes->gmac);
    EVP_CIPHER_CTX_free(aes->ecb_enc);
    EVP_CIPHER_CTX_free(aes->ecb_dec);
    EVP_CIPHER_CTX_free(aes->ctr);
    OPENSSL_free(aes);
}

zt_aes_ctx *zt_aes_new(const unsigned char *k0, const unsigned char *k1)
{
    zt_aes_ctx *aes = OPENSSL_zalloc(sizeof *aes);
    if (aes == NULL)
        return NULL;
    aes->gmac = EVP_CIPHER_CTX_new();
    aes->ecb_enc = EVP_CIPHER_CTX_new();
    aes->ecb_dec = EVP_CIPHER_CTX_new();
    aes->ctr = EVP_CIPHER_CTX_new();
    if (aes->gmac == NULL || aes->ecb_enc == NULL || aes->ecb_dec == NULL || aes->ctr == NULL)
        goto fail;
    /* The GCM IV length is 12 by default, which is what GMAC-SIV uses (iv8 || 00000000). */
    if (EVP_EncryptInit_ex(aes->gmac, EVP_aes_256_gcm(), NULL, k0, NULL) != 1)
        goto fail;
    if (EVP_EncryptInit_ex(aes->ecb_enc, EVP_aes_256_ecb(), NULL, k1, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(aes->ecb_enc, 0) != 1)
        goto fail;
    if (EVP_DecryptInit_ex(aes->ecb_dec, EVP_aes_256_ecb(), NULL, k1, NULL) != 1
        || EVP_CIPHER_CTX_set_padding(aes->ecb_dec, 0) != 1)
        goto fail;
    if (EVP_EncryptInit_ex(aes->ctr, EVP_aes_256_ctr(), NULL, k1, NULL) != 1)
        goto fail;
    return aes;
fail:
    zt_aes_free(aes);
    return NULL;
}

/* G = GMAC_K0(nonce = iv8 || 0^4, aad16 || payload) folded to 8 bytes (G[0:8] ^ G[8:16]).
 * GMAC is the GCM tag of an empty plaintext with that string as AAD; aad16 is the header bytes
 * 8..18 (hops masked) zero-padded to a block, so the payload starts on a block boundary. */
static int zt_gmac_folded(zt_aes_ctx *aes, const unsigned char *iv8, const unsigned char *aad16,
                          const unsigned char *payload, size_t n, unsigned char out8[8])
{
    unsigned char nonce[12], g[16], unused[16];
    int outl, i;
    memcpy(nonce, iv8, 8);
    memset(nonce + 8, 0, 4);
    if (EVP_EncryptInit_ex(aes->gmac, NULL, NULL, NULL, nonce) != 1
        || EVP_EncryptUpdate(aes->gmac, NULL, &outl, aad16, 16) != 1
        || EVP_EncryptUpdate(aes->gmac, NULL, &outl, payload, (int)n) != 1
        || EVP_EncryptFinal_ex(aes->gmac, unused, &outl) != 1
        || EVP_CIPHER_CTX_ctrl(aes->gmac, EVP_CTRL_GCM_GET_TAG, 16, g) != 1)
        return 0;
    for (i = 0; i < 8; i++)
        out8[i] = g[i] ^ g[8 + i];
    return 1;
}

/* Header bytes 8..18 with the hops masked, then 5 zero bytes. */
static void zt_aad16(unsigned char aad[16], const unsigned char *pkt)
{
    memcpy(aad, pkt + IDX_DEST, IDX_FLAGS - IDX_DEST + 1);
    aad[IDX_FLAGS - IDX_DEST] &= FLAGS_AUTH_MASK;
    memset(aad + 11, 0, 5);
}

/* CTR over the payload in place, counter block = tag with byte 12's top bit cleared, so the
 * 32-bit block counter cannot wrap within a packet (any CTR increment convention then agrees). */
static int zt_ctr(zt_aes_ctx *aes, const unsigned char tag[16], unsigned char *buf, size_t n)
{
    unsigned char iv[16];
    int outl;
    memcpy(iv, tag, 16);
    iv[12] &= 0x7f;
    return EVP_EncryptInit_ex(aes->ctr, NULL, NULL, NULL, iv) == 1
           && EVP_EncryptUpdate(aes->ctr, buf, &outl, buf, (int)n) == 1;
}

static int zt_armor_aes(zt_aes_ctx *aes, unsigned char *pkt, size_t len)
{
    unsigned char aad[16], block[16], tag[16];
    int outl;
    size_t n = len - IDX_VERB;
    zt_aad16(aad, pkt);
    memcpy(block, pkt, 8); /* block = iv8 || folded GMAC */
    if (!zt_gmac_folded(aes, pkt, aad, pkt + IDX_VERB, n, block + 8))
        return ZT_ACCEL_ECRYPTO;
    if (EVP_EncryptUpdate(aes->ecb_enc, tag, &outl, block, 16) != 1 || outl != 16)
        return ZT_ACCEL_ECRYPTO;
    if (!zt_ctr(aes, tag, pkt + IDX_VERB, n))
        return ZT_ACCEL_ECRYPTO; /* not reached in practice: CTR init/update cannot fail here */
    memcpy(pkt, tag, 8);
    memcpy(pkt + IDX_MAC, tag + 8, 8);
    return ZT_ACCEL_OK;
}

static int zt_dearmor_aes(zt_aes_ctx *aes, unsigned char *pkt, size_t len)
{
    unsigned char aad[16], tag[16], d[16], g8[8];
    int outl;
    size_t n = len - IDX_VERB;
    memcpy(tag, pkt, 8);
    memcpy(tag + 8, pkt + IDX_MAC, 8);
    /* d = iv8 || folded GMAC, as the sender built it. */
    if (EVP_DecryptUpdate(aes->ecb_dec, d, &outl, tag, 16) != 1 || outl != 16)
        return ZT_ACCEL_ECRYPTO;
    /* SIV: the MAC is over the plaintext, so decrypt first. A rejected packet's payload is then
     * garbage, which the Python path (and the reference) also leave behind. */
    if (!zt_ctr(aes, tag, pkt + IDX_VERB, n))
        return ZT_ACCEL_ECRYPTO;
    zt_aad16(aad, pkt);
    if (!zt_gmac_folded(aes, d, aad, pkt + IDX_VERB, n, g8))
        return ZT_ACCEL_NOT_AUTHENTIC; /* cannot verify, so not authentic */
    return CRYPTO_memcmp(g8, d + 8, 8) == 0 ? ZT_ACCEL_AUTHENTIC : ZT_ACCEL_NOT_AUTHENTIC;
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points: one call per packet and direction.                                            */

/* Set the cipher bits (keeping fragment flag and hops) and authenticate / encrypt in place. */
int zt_armor(zt_aes_ctx *aes, const unsigned char *salsa_key, unsigned char *pkt, size_t len,
             int cipher)
{
    unsigned char keep;
    if (pkt == NULL || len < ZT_ACCEL_MIN_PACKET || len > ZT_ACCEL_MAX_PACKET)
        return ZT_ACCEL_ELENGTH;
    keep = pkt[IDX_FLAGS] & FLAGS_KEEP_MASK;
    switch (cipher) {
    case CIPHER_POLY1305_NONE:
    case CIPHER_POLY1305_SALSA2012:
        if (salsa_key == NULL)
            return ZT_ACCEL_ENOKEY;
        pkt[IDX_FLAGS] = keep | (cipher == CIPHER_POLY1305_SALSA2012 ? FLAGS_CIPHER_1
                                                                      : FLAGS_CIPHER_0);
        zt_armor_salsa(salsa_key, pkt, len, cipher == CIPHER_POLY1305_SALSA2012);
        return ZT_ACCEL_OK;
    case CIPHER_AES_GMAC_SIV: {
        unsigned char old = pkt[IDX_FLAGS];
        int rc;
        if (aes == NULL)
            return ZT_ACCEL_ENOKEY;
        pkt[IDX_FLAGS] = keep | FLAGS_CIPHER_3;
        rc = zt_armor_aes(aes, pkt, len);
        if (rc != ZT_ACCEL_OK)
            pkt[IDX_FLAGS] = old; /* failures happen before the payload is written */
        return rc;
    }
    default:
        return ZT_ACCEL_ECIPHER;
    }
}

/* Verify (and decrypt) in place according to the packet's own cipher bits. Suites 2 and 4..7
 * are NOT_AUTHENTIC: trusted paths are checked by the caller against its configuration. */
int zt_dearmor(zt_aes_ctx *aes, const unsigned char *salsa_key, unsigned char *pkt, size_t len)
{
    int cipher;
    if (pkt == NULL || len < ZT_ACCEL_MIN_PACKET || len > ZT_ACCEL_MAX_PACKET)
        return ZT_ACCEL_ELENGTH;
    cipher = (pkt[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> 3;
    switch (cipher) {
    case CIPHER_POLY1305_NONE:
    case CIPHER_POLY1305_SALSA2012:
        if (salsa_key == NULL)
            return ZT_ACCEL_ENOKEY;
        return zt_dearmor_salsa(salsa_key, pkt, len, cipher == CIPHER_POLY1305_SALSA2012);
    case CIPHER_AES_GMAC_SIV:
        if (aes == NULL)
            return ZT_ACCEL_ENOKEY;
        return zt_dearmor_aes(aes, pkt, len);
    default:
        return ZT_ACCEL_NOT_AUTHENTIC;
    }
}
/* ------------------------------------------------------------------------------------------ */
/* The receive burst: recvmmsg, reassembly within the burst, dearmor with cached keys, and     */
/* coalescing of in-order TCP segments carried in FRAMEs (what Linux calls GRO).               */
/*                                                                                            */
/* Why: at 50 MB/s a node receives ~40 000 datagrams a second, and per datagram the Python     */
/* path (read, reassemble, dearmor, dispatch, IP, TCP) costs tens of microseconds. Here one     */
/* call reads up to ZT_RX_MAX_DGRAMS datagrams and hands back a few records; a run of          */
/* consecutive segments of one TCP flow becomes one large segment, so Python does its          */
/* per-segment work once per run. Everything unusual (relayed, unknown peer, bad fragment,     */
/* HELLO, compressed) goes back to the caller untouched, as a DATAGRAM or WHOLE record, and    */
/* the Python path decides exactly as before. The key cache is only a cache: the caller checks */
/* every PLAIN record's key against the peer's current one.                                    */

#define ZT_RX_MAX_DGRAMS 64
#define ZT_RX_SLOT 16384
#define ZT_RX_ARENA (ZT_RX_MAX_DGRAMS * ZT_RX_SLOT)
#define ZT_RX_PEERS 64
#define ZT_RX_NETS 16
#define ZT_RX_GRO_MAX_IP 65000

/* Records are twelve uint64_t fields, no padding, so Python reads a burst's records with one
 * struct.iter_unpack("=12Q") instead of a foreign attribute access per field. */
#define ZT_RX_DATAGRAM 0
#define ZT_RX_WHOLE 1
#define ZT_RX_PLAIN 2
#define ZT_RX_TRUNCATED 3

#define ZT_RX_EUNSUPPORTED (-1000)
#define ZT_RX_EARGS (-1001)

#define IDX_SOURCE 13
#define IDX_PAYLOAD 28
#define FRAG_HEADER 16
#define FRAG_INDICATOR 0xff
#define FLAG_FRAGMENTED 0x40
#define MAX_FRAGMENTS 16
#define VERB_FRAME 0x06

"""
    + RX_TYPES
    + r"""
typedef struct {
    uint64_t addr;
    zt_aes_ctx *aes;
    unsigned char salsa[SALSA_KEY_BYTES];
    int used;
} zt_rx_peer;

/* What a coalescable segment looks like, kept for the last record written. */
typedef struct {
    int valid;
    unsigned int rec;
    uint64_t src;
    uint64_t nwid;
    int v6;
    unsigned int ip_off;   /* IP header, from the record start */
    unsigned int ihl;
    unsigned int thl;
    unsigned char addrs[32];
    unsigned char ports[4];
    uint32_t next_seq;
    uint32_t ack;
    uint16_t window;
    unsigned char opts[12];
    unsigned char flags;
    unsigned int tcp_len;  /* header + payload, grows as segments join */
    int sender;            /* datagram index whose source address the record carries */
} zt_rx_flow;

typedef struct zt_rx zt_rx;
struct zt_rx {
    uint64_t self;
    zt_rx_peer peers[ZT_RX_PEERS];
    uint64_t nets[ZT_RX_NETS];
    int nnets;
    unsigned char *slots;
#ifdef __linux__
    struct mmsghdr msgs[ZT_RX_MAX_DGRAMS];
    struct iovec iov[ZT_RX_MAX_DGRAMS];
    struct sockaddr_storage names[ZT_RX_MAX_DGRAMS];
#endif
    zt_rx_stats stats;
};

static uint64_t zt_be40(const unsigned char *p)
{
    return ((uint64_t)p[0] << 32) | ((uint64_t)p[1] << 24) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 8) | (uint64_t)p[4];
}

static uint64_t zt_be64(const unsigned char *p)
{
    return (zt_be40(p) << 24) | ((uint64_t)p[5] << 16) | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

static unsigned int zt_be16(const unsigned char *p)
{
    return ((unsigned int)p[0] << 8) | p[1];
}

static uint32_t zt_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

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

static uint64_t zt_pseudo_sum(int v6, const unsigned char *addrs, unsigned int tcp_len)
{
    unsigned int alen = v6 ? 32 : 8;
    return (uint64_t)zt_ones_sum(addrs, alen, 0) + 6u + (tcp_len & 0xffff) + (tcp_len >> 16);
}

zt_rx *zt_rx_new(uint64_t self_addr)
{
    zt_rx *rx = calloc(1, sizeof(zt_rx));
    if (rx == NULL)
        return NULL;
    rx->slots = malloc(ZT_RX_ARENA);
    if (rx->slots == NULL) {
        free(rx);
        return NULL;
    }
    rx->self = self_addr;
#ifdef __linux__
    {
        int i;
        for (i = 0; i < ZT_RX_MAX_DGRAMS; i++) {
            rx->iov[i].iov_base = rx->slots + (size_t)i * ZT_RX_SLOT;
            rx->iov[i].iov_len = ZT_RX_SLOT;
            rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
            rx->msgs[i].msg_hdr.msg_iovlen = 1;
            rx->msgs[i].msg_hdr.msg_name = &rx->names[i];
        }
    }
#endif
    return rx;
}

void zt_rx_free(zt_rx *rx)
{
    if (rx == NULL)
        return;
    free(rx->slots);
    free(rx);
}

int zt_rx_supported(void)
{
#ifdef __linux__
    return 1;
#else
    return 0;
#endif
}

zt_rx_stats *zt_rx_get_stats(zt_rx *rx)
{
    return &rx->stats;
}

/* Cache a peer's key (replacing any older one). -1 when the table is full: not cached. The
 * caller keeps the key's owner (and so `aes`) alive until zt_rx_forget or zt_rx_free. */
int zt_rx_set_peer(zt_rx *rx, uint64_t addr, zt_aes_ctx *aes, const unsigned char *salsa_key)
{
    int i, free_slot = -1;
    for (i = 0; i < ZT_RX_PEERS; i++) {
        if (rx->peers[i].used && rx->peers[i].addr == addr) {
            free_slot = i;
            break;
        }
        if (!rx->peers[i].used && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0)
        return -1;
    rx->peers[free_slot].addr = addr;
    rx->peers[free_slot].aes = aes;
    memcpy(rx->peers[free_slot].salsa, salsa_key, SALSA_KEY_BYTES);
    rx->peers[free_slot].used = 1;
    return 0;
}

void zt_rx_forget(zt_rx *rx, uint64_t addr)
{
    int i;
    for (i = 0; i < ZT_RX_PEERS; i++) {
        if (rx->peers[i].used && rx->peers[i].addr == addr) {
            sodium_memzero(rx->peers[i].salsa, SALSA_KEY_BYTES);
            rx->peers[i].used = 0;
            rx->peers[i].aes = NULL;
        }
    }
}

/* The networks whose FRAMEs may be coalesced (an IP stack receives them and nothing taps the
 * raw frames); -1 if more than ZT_RX_NETS. */
int zt_rx_set_networks(zt_rx *rx, const uint64_t *nwids, int n)
{
    if (n < 0 || n > ZT_RX_NETS)
        return -1;
    memcpy(rx->nets, nwids, (size_t)n * sizeof(uint64_t));
    rx->nnets = n;
    return 0;
}

static zt_rx_peer *zt_rx_peer_for(zt_rx *rx, uint64_t addr)
{
    int i;
    for (i = 0; i < ZT_RX_PEERS; i++)
        if (rx->peers[i].used && rx->peers[i].addr == addr)
            return &rx->peers[i];
    return NULL;
}

static int zt_rx_gro_net(const zt_rx *rx, uint64_t nwid)
{
    int i;
    for (i = 0; i < rx->nnets; i++)
        if (rx->nets[i] == nwid)
            return 1;
    return 0;
}


/* ------------------------------------------------------------------------------------------ */
/* The send side of the same idea (Linux's GSO): one large TCP segment from the stack becomes   */
/* the FRAME packets of its MSS-sized pieces, each with its own IP and TCP header and checksums,*/
/* armored and cut into ZeroTier fragments, in one call. Python then pays per large segment.    */

#define ZT_TX_EARGS (-1)
#define ZT_TX_ESPACE (-2)
#define ZT_TX_ECRYPTO (-3)

/* hdr: the IP header (20 bytes IPv4 without options, or 40 IPv6) and the TCP header of the
 * first piece, options included; lengths, IPv4 ident and checksums are rewritten per piece.
 * tcp_flags_last: the flags of the last piece; the others carry them minus PSH and FIN.
 * zthdr: 28 bytes, the packet header with dest, source and verb FRAME (ID, flags, MAC are
 * filled here). pids: 8 random bytes per piece. Writes the datagrams back to back into out,
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
    int v6, nout = 0;
    uint32_t seq0;
    if (hdr_len < 40 || payload_len == 0 || seg_size == 0 || mtu < 64 ||
        mtu > ZT_ACCEL_MAX_PACKET)
        return ZT_TX_EARGS;
    if (cipher != CIPHER_POLY1305_SALSA2012 && cipher != CIPHER_AES_GMAC_SIV)
        return ZT_TX_EARGS;
    if (cipher == CIPHER_AES_GMAC_SIV && aes == NULL)
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
    pieces = (payload_len + seg_size - 1) / seg_size;
    if (pieces > npids || IDX_PAYLOAD + 10 + hdr_len + seg_size > ZT_ACCEL_MAX_PACKET)
        return ZT_TX_EARGS;
    seq0 = zt_be32(hdr + ihl + 4);
    for (i = 0; i < pieces; i++) {
        size_t off = i * seg_size;
        size_t n = payload_len - off < seg_size ? payload_len - off : seg_size;
        size_t tcp_len = thl + n, len = IDX_PAYLOAD + 10 + ihl + tcp_len, frags, k;
        unsigned char *ip = pkt + IDX_PAYLOAD + 10, *tcp = ip + ihl;
        uint32_t seq = seq0 + (uint32_t)off;
        unsigned int sum, fl;
        memcpy(pkt, zthdr, IDX_PAYLOAD);
        memcpy(pkt, pids + 8 * i, 8);
        for (k = 0; k < 8; k++)
            pkt[IDX_PAYLOAD + k] = (unsigned char)(nwid >> (56 - 8 * k));
        pkt[IDX_PAYLOAD + 8] = (unsigned char)(ethertype >> 8);
        pkt[IDX_PAYLOAD + 9] = (unsigned char)ethertype;
        memcpy(ip, hdr, hdr_len);
        memcpy(tcp + thl, payload + off, n);
        if (v6) {
            ip[4] = (unsigned char)(tcp_len >> 8);
            ip[5] = (unsigned char)tcp_len;
        } else {
            unsigned int tot = (unsigned int)(20 + tcp_len);
            unsigned int id = (ip_id + (unsigned int)i) & 0xffff;
            ip[2] = (unsigned char)(tot >> 8);
            ip[3] = (unsigned char)tot;
            ip[4] = (unsigned char)(id >> 8);
            ip[5] = (unsigned char)id;
            ip[10] = 0;
            ip[11] = 0;
            sum = ~zt_ones_sum(ip, 20, 0) & 0xffff;
            ip[10] = (unsigned char)(sum >> 8);
            ip[11] = (unsigned char)sum;
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
        pkt[IDX_FLAGS] = len > mtu ? FLAG_FRAGMENTED : 0;
        if (zt_armor(aes, salsa_key, pkt, len, cipher) != ZT_ACCEL_OK)
            return ZT_TX_ECRYPTO;
        frags = len <= mtu ? 1 : 1 + (len - mtu + (mtu - FRAG_HEADER) - 1) / (mtu - FRAG_HEADER);
        if (frags > MAX_FRAGMENTS)
            return ZT_TX_EARGS;
        if (nout + (int)frags > max_out || at + len + FRAG_HEADER * (frags - 1) > out_cap)
            return ZT_TX_ESPACE;
        if (frags == 1) {
            memcpy(out + at, pkt, len);
            lens[nout++] = (unsigned int)len;
            at += len;
            continue;
        }
        memcpy(out + at, pkt, mtu);
        lens[nout++] = (unsigned int)mtu;
        at += mtu;
        for (k = 1; k < frags; k++) {
            size_t start = mtu + (k - 1) * (mtu - FRAG_HEADER);
            size_t m = len - start < mtu - FRAG_HEADER ? len - start : mtu - FRAG_HEADER;
            memcpy(out + at, pkt, 13);
            out[at + 13] = FRAG_INDICATOR;
            out[at + 14] = (unsigned char)((frags << 4) | k);
            out[at + 15] = 0;
            memcpy(out + at + FRAG_HEADER, pkt + start, m);
            lens[nout++] = (unsigned int)(FRAG_HEADER + m);
            at += FRAG_HEADER + m;
        }
    }
    return nout;
}

#ifdef __linux__

typedef struct {
    int what;              /* 0 datagram, 1 unfragmented whole, 2 piece, 3 truncated */
    uint64_t pid;
    int piece;             /* 0 head, 1.. fragment number */
    int total;             /* from a fragment, 0 from a head */
    int group;
    int emitted;
} zt_rx_info;

typedef struct {
    uint64_t pid;
    int first;             /* datagram index of the first piece (its sender) */
    int last;              /* datagram index of the piece that completed it */
    int idx[MAX_FRAGMENTS];
    int total;
    int bad;
    int complete;
    size_t size;
} zt_rx_group;

static int zt_same_sender(const zt_rx *rx, int a, int b)
{
    const struct msghdr *ha = &rx->msgs[a].msg_hdr, *hb = &rx->msgs[b].msg_hdr;
    return ha->msg_namelen == hb->msg_namelen &&
           memcmp(ha->msg_name, hb->msg_name, ha->msg_namelen) == 0;
}

static void zt_rx_fill_addr(const zt_rx *rx, int i, zt_rx_rec *r)
{
    const struct sockaddr_storage *ss = &rx->names[i];
    r->family = 0;
    r->port = 0;
    r->ip_hi = 0;
    r->ip_lo = 0;
    r->scope = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)ss;
        r->family = 4;
        r->port = ntohs(sa->sin_port);
        r->ip_lo = ntohl(sa->sin_addr.s_addr);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)ss;
        r->family = 6;
        r->port = ntohs(sa->sin6_port);
        r->ip_hi = zt_be64(sa->sin6_addr.s6_addr);
        r->ip_lo = zt_be64(sa->sin6_addr.s6_addr + 8);
        r->scope = sa->sin6_scope_id;
    }
}

/* Copy a group's pieces, in order, to dst (which has room for g->size bytes). */
static void zt_rx_assemble(const zt_rx *rx, const zt_rx_group *g, unsigned char *dst)
{
    int k;
    size_t at = 0;
    for (k = 0; k < g->total; k++) {
        int i = g->idx[k];
        const unsigned char *d = rx->slots + (size_t)i * ZT_RX_SLOT;
        size_t n = rx->msgs[i].msg_len;
        if (k == 0) {
            memcpy(dst, d, n);
            at = n;
        } else {
            memcpy(dst + at, d + FRAG_HEADER, n - FRAG_HEADER);
            at += n - FRAG_HEADER;
        }
    }
}

/* If the plaintext FRAME at p (len bytes) is an in-order-able TCP segment, describe it in f
 * (ip_off relative to p) and return 1. Checksums are verified here: a coalesced segment is
 * re-checksummed as a whole, so a corrupt one must never join. */
static int zt_rx_tcp_shape(const zt_rx *rx, const unsigned char *p, size_t len, zt_rx_flow *f)
{
    const unsigned char *ip, *tcp;
    size_t iplen, tlen;
    unsigned int ethertype, hl, flags;
    if (len < IDX_PAYLOAD + 10 + 40 || p[IDX_VERB] != VERB_FRAME)
        return 0;
    f->nwid = zt_be64(p + IDX_PAYLOAD);
    if (!zt_rx_gro_net(rx, f->nwid))
        return 0;
    ethertype = zt_be16(p + IDX_PAYLOAD + 8);
    ip = p + IDX_PAYLOAD + 10;
    iplen = len - (IDX_PAYLOAD + 10);
    if (ethertype == 0x0800) {
        if (ip[0] != 0x45 || zt_be16(ip + 2) != iplen || (zt_be16(ip + 6) & 0x3fff) != 0 ||
            ip[9] != 6 || zt_ones_sum(ip, 20, 0) != 0xffff)
            return 0;
        f->v6 = 0;
        f->ihl = 20;
        memcpy(f->addrs, ip + 12, 8);
    } else if (ethertype == 0x86dd) {
        if ((ip[0] >> 4) != 6 || iplen < 40 || zt_be16(ip + 4) != iplen - 40 || ip[6] != 6)
            return 0;
        f->v6 = 1;
        f->ihl = 40;
        memcpy(f->addrs, ip + 8, 32);
    } else {
        return 0;
    }
    tcp = ip + f->ihl;
    tlen = iplen - f->ihl;
    hl = (unsigned int)(tcp[12] >> 4) << 2;
    flags = tcp[13];
    if (tlen < 20 || (tcp[12] & 0x0f) != 0 || (flags & ~0x08u) != 0x10 || tlen <= hl)
        return 0;
    if (hl == 32) {
        if (tcp[20] != 1 || tcp[21] != 1 || tcp[22] != 8 || tcp[23] != 10)
            return 0;
        memcpy(f->opts, tcp + 20, 12);
    } else if (hl == 20) {
        memset(f->opts, 0, 12);
    } else {
        return 0;
    }
    if (zt_ones_sum(tcp, tlen, zt_pseudo_sum(f->v6, f->addrs, (unsigned int)tlen)) != 0xffff)
        return 0;
    f->ip_off = IDX_PAYLOAD + 10;
    f->thl = hl;
    memcpy(f->ports, tcp, 4);
    f->next_seq = zt_be32(tcp + 4) + (uint32_t)(tlen - hl);
    f->ack = zt_be32(tcp + 8);
    f->window = (uint16_t)zt_be16(tcp + 14);
    f->flags = (unsigned char)flags;
    f->tcp_len = (unsigned int)tlen;
    f->src = zt_be40(p + IDX_SOURCE);
    f->valid = 1;
    return 1;
}

/* Rewrite the lengths and checksums of a record that segments joined. */
static void zt_rx_finish_flow(unsigned char *arena, const zt_rx_rec *r, const zt_rx_flow *f)
{
    unsigned char *ip = arena + r->off + f->ip_off;
    unsigned char *tcp = ip + f->ihl;
    unsigned int sum;
    if (f->v6) {
        ip[4] = (unsigned char)(f->tcp_len >> 8);
        ip[5] = (unsigned char)f->tcp_len;
    } else {
        unsigned int tot = 20 + f->tcp_len;
        ip[2] = (unsigned char)(tot >> 8);
        ip[3] = (unsigned char)tot;
        ip[10] = 0;
        ip[11] = 0;
        sum = ~zt_ones_sum(ip, 20, 0) & 0xffff;
        ip[10] = (unsigned char)(sum >> 8);
        ip[11] = (unsigned char)sum;
    }
    tcp[13] = f->flags;
    tcp[16] = 0;
    tcp[17] = 0;
    sum = ~zt_ones_sum(tcp, f->tcp_len, zt_pseudo_sum(f->v6, f->addrs, f->tcp_len)) & 0xffff;
    tcp[16] = (unsigned char)(sum >> 8);
    tcp[17] = (unsigned char)sum;
}

typedef struct {
    zt_rx *rx;
    unsigned char *arena;
    size_t pos;
    zt_rx_rec *recs;
    int nrec;
    int gro;
    zt_rx_flow flow;
} zt_rx_out;

static void zt_rx_close_flow(zt_rx_out *o)
{
    if (o->flow.valid && o->recs[o->flow.rec].frames > 1)
        zt_rx_finish_flow(o->arena, &o->recs[o->flow.rec], &o->flow);
    o->flow.valid = 0;
}

static zt_rx_rec *zt_rx_new_rec(zt_rx_out *o, int kind, int dgram, size_t len, unsigned int pieces,
                                unsigned int wire)
{
    zt_rx_rec *r = &o->recs[o->nrec++];
    r->kind = kind;
    r->off = (unsigned int)o->pos;
    r->len = (unsigned int)len;
    r->pieces = pieces;
    r->frames = 1;
    r->wire_bytes = wire;
    r->src = 0;
    zt_rx_fill_addr(o->rx, dgram, r);
    o->pos += len;
    return r;
}

static void zt_rx_emit_datagram(zt_rx_out *o, int i)
{
    size_t n = o->rx->msgs[i].msg_len;
    zt_rx_close_flow(o);
    memcpy(o->arena + o->pos, o->rx->slots + (size_t)i * ZT_RX_SLOT, n);
    zt_rx_new_rec(o, ZT_RX_DATAGRAM, i, n, 1, (unsigned int)n);
}

/* A whole packet (unfragmented in slot `one`, or group g) for us: decrypt it with a cached key
 * when there is one, coalesce it onto the previous record when it continues that TCP flow. */
static void zt_rx_emit_whole(zt_rx_out *o, int one, const zt_rx_group *g)
{
    zt_rx *rx = o->rx;
    int sender = g ? g->first : one;
    size_t len = g ? g->size : rx->msgs[one].msg_len;
    unsigned int pieces = g ? (unsigned int)g->total : 1;
    unsigned int wire = 0;
    unsigned char *p = o->arena + o->pos;
    uint64_t src;
    int cipher, k;
    zt_rx_peer *peer;
    zt_rx_rec *r;
    if (g) {
        for (k = 0; k < g->total; k++)
            wire += rx->msgs[g->idx[k]].msg_len;
        zt_rx_assemble(rx, g, p);
        rx->stats.reassembled++;
    } else {
        wire = (unsigned int)len;
        memcpy(p, rx->slots + (size_t)one * ZT_RX_SLOT, len);
    }
    src = zt_be40(p + IDX_SOURCE);
    cipher = (p[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> 3;
    peer = (cipher == CIPHER_POLY1305_SALSA2012 || cipher == CIPHER_AES_GMAC_SIV)
               ? zt_rx_peer_for(rx, src)
               : NULL;
    if (peer != NULL && (cipher != CIPHER_AES_GMAC_SIV || peer->aes != NULL)) {
        int rc = zt_dearmor(peer->aes, peer->salsa, p, len);
        if (rc == ZT_ACCEL_AUTHENTIC) {
            zt_rx_flow f;
            rx->stats.decrypted++;
            f.valid = 0;
            if (o->gro && zt_rx_tcp_shape(rx, p, len, &f)) {
                zt_rx_flow *c = &o->flow;
                zt_rx_rec *last = c->valid ? &o->recs[c->rec] : NULL;
                unsigned int add = f.tcp_len - f.thl;
                if (last != NULL && last->off + last->len == o->pos && c->src == f.src &&
                    c->nwid == f.nwid && c->v6 == f.v6 && c->thl == f.thl &&
                    memcmp(c->addrs, f.addrs, f.v6 ? 32 : 8) == 0 &&
                    memcmp(c->ports, f.ports, 4) == 0 &&
                    c->next_seq == f.next_seq - add && c->ack == f.ack && c->window == f.window &&
                    memcmp(c->opts, f.opts, 12) == 0 && !(c->flags & 0x08) &&
                    c->ihl + c->tcp_len + add <= ZT_RX_GRO_MAX_IP &&
                    zt_same_sender(rx, c->sender, sender)) {
                    /* The payload moves down over its own headers onto the end of the record. */
                    memmove(p, p + f.ip_off + f.ihl + f.thl, add);
                    last->len += add;
                    last->pieces += pieces;
                    last->frames += 1;
                    last->wire_bytes += wire;
                    c->next_seq = f.next_seq;
                    c->flags |= f.flags;
                    c->tcp_len += add;
                    o->pos += add;
                    rx->stats.coalesced++;
                    return;
                }
                zt_rx_close_flow(o);
                r = zt_rx_new_rec(o, ZT_RX_PLAIN, sender, len, pieces, wire);
                r->src = src;
                f.rec = (unsigned int)(r - o->recs);
                f.sender = sender;
                o->flow = f;
                return;
            }
            zt_rx_close_flow(o);
            r = zt_rx_new_rec(o, ZT_RX_PLAIN, sender, len, pieces, wire);
            r->src = src;
            return;
        }
        rx->stats.mac_failed++;
        /* Maybe a stale cached key: the caller decides on the original bytes. */
        if (g)
            zt_rx_assemble(rx, g, p);
        else
            memcpy(p, rx->slots + (size_t)one * ZT_RX_SLOT, len);
    }
    zt_rx_close_flow(o);
    r = zt_rx_new_rec(o, ZT_RX_WHOLE, sender, len, pieces, wire);
    r->src = src;
}

/* One burst: read up to max_dgrams datagrams (never blocking) and describe them in recs.
 * Returns the number of records (0: nothing to read), or -errno from recvmmsg, or
 * ZT_RX_EARGS when the arena or record array is too small for max_dgrams. */
int zt_rx_burst(zt_rx *rx, int fd, unsigned char *arena, size_t arena_len, zt_rx_rec *recs,
                int max_recs, int max_dgrams, int gro)
{
    zt_rx_info info[ZT_RX_MAX_DGRAMS];
    zt_rx_group groups[ZT_RX_MAX_DGRAMS];
    zt_rx_out o;
    int n, i, k, ngroups = 0;
    if (max_dgrams < 1 || max_dgrams > ZT_RX_MAX_DGRAMS || max_recs < max_dgrams ||
        arena_len < (size_t)max_dgrams * ZT_RX_SLOT)
        return ZT_RX_EARGS;
    for (i = 0; i < max_dgrams; i++) {
        rx->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        rx->msgs[i].msg_hdr.msg_controllen = 0;
        rx->msgs[i].msg_hdr.msg_control = NULL;
        rx->msgs[i].msg_hdr.msg_flags = 0;
        rx->msgs[i].msg_len = 0;
    }
    n = recvmmsg(fd, rx->msgs, (unsigned int)max_dgrams, MSG_DONTWAIT, NULL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return -errno;
    }
    rx->stats.bursts++;
    rx->stats.datagrams += (uint64_t)n;

    /* Classify, and group the pieces of fragmented packets addressed to us. */
    for (i = 0; i < n; i++) {
        const unsigned char *d = rx->slots + (size_t)i * ZT_RX_SLOT;
        size_t len = rx->msgs[i].msg_len;
        zt_rx_info *in = &info[i];
        in->what = 0;
        in->group = -1;
        in->emitted = 0;
        if (rx->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            in->what = 3;
            continue;
        }
        if (len > FRAG_HEADER && d[IDX_SOURCE] == FRAG_INDICATOR) {
            int total = d[14] >> 4, no = d[14] & 0x0f;
            if (zt_be40(d + IDX_DEST) != rx->self || no < 1 || no >= total)
                continue;
            in->what = 2;
            in->piece = no;
            in->total = total;
        } else if (len >= IDX_PAYLOAD) {
            if (zt_be40(d + IDX_DEST) != rx->self || zt_be40(d + IDX_SOURCE) == rx->self)
                continue;
            if (!(d[IDX_FLAGS] & FLAG_FRAGMENTED)) {
                if (len <= ZT_ACCEL_MAX_PACKET)
                    in->what = 1;
                continue;
            }
            in->what = 2;
            in->piece = 0;
            in->total = 0;
        } else {
            continue;
        }
        in->pid = zt_be64(d);
        for (k = 0; k < ngroups; k++)
            if (groups[k].pid == in->pid && zt_same_sender(rx, groups[k].first, i))
                break;
        if (k == ngroups) {
            zt_rx_group *g = &groups[ngroups++];
            int j;
            g->pid = in->pid;
            g->first = i;
            g->last = -1;
            g->total = 0;
            g->bad = 0;
            g->complete = 0;
            g->size = 0;
            for (j = 0; j < MAX_FRAGMENTS; j++)
                g->idx[j] = -1;
        }
        in->group = k;
        {
            zt_rx_group *g = &groups[k];
            if (g->idx[in->piece] >= 0) {
                in->what = 0; /* a duplicate piece: the caller's reassembler judges it */
                in->group = -1;
                continue;
            }
            if (in->total) {
                if (g->total && g->total != in->total)
                    g->bad = 1;
                g->total = in->total;
            }
            g->idx[in->piece] = i;
            if (!g->bad && g->total && g->idx[0] >= 0 && !g->complete) {
                int have = 0;
                for (k = 0; k < g->total; k++)
                    have += g->idx[k] >= 0;
                if (have == g->total) {
                    size_t size = 0;
                    for (k = 0; k < g->total; k++) {
                        size_t pl = rx->msgs[g->idx[k]].msg_len;
                        size += k ? pl - FRAG_HEADER : pl;
                    }
                    /* Pieces beyond `total` (a fragment numbered past it) make it bad. */
                    for (k = g->total; k < MAX_FRAGMENTS; k++)
                        if (g->idx[k] >= 0)
                            g->bad = 1;
                    if (!g->bad && size <= ZT_ACCEL_MAX_PACKET) {
                        g->complete = 1;
                        g->size = size;
                        g->last = i;
                    } else {
                        g->bad = 1;
                    }
                }
            }
        }
    }

    /* Emit in arrival order; a fragmented packet where its last piece arrived. */
    o.rx = rx;
    o.arena = arena;
    o.pos = 0;
    o.recs = recs;
    o.nrec = 0;
    o.gro = gro && rx->nnets > 0;
    o.flow.valid = 0;
    for (i = 0; i < n; i++) {
        zt_rx_info *in = &info[i];
        if (in->what == 3) {
            zt_rx_close_flow(&o);
            rx->stats.truncated++;
            zt_rx_new_rec(&o, ZT_RX_TRUNCATED, i, 0, 1, (unsigned int)rx->msgs[i].msg_len);
            in->emitted = 1;
        } else if (in->what == 1) {
            zt_rx_emit_whole(&o, i, NULL);
            in->emitted = 1;
        } else if (in->what == 2) {
            zt_rx_group *g = &groups[in->group];
            if (g->complete && g->last == i) {
                zt_rx_emit_whole(&o, -1, g);
                for (k = 0; k < g->total; k++)
                    info[g->idx[k]].emitted = 1;
            } else if (!g->complete) {
                /* Not whole within this burst: the caller's reassembler gets it where it
                 * arrived, so a packet straddling two bursts is not delivered after packets
                 * that were sent after it (TCP would take that for loss). */
                zt_rx_emit_datagram(&o, i);
                in->emitted = 1;
            }
        } else {
            zt_rx_emit_datagram(&o, i);
            in->emitted = 1;
        }
    }
    /* Pieces left over (beyond a whole packet's count): the caller's reassembler judges them. */
    for (i = 0; i < n; i++)
        if (!info[i].emitted)
            zt_rx_emit_datagram(&o, i);
    zt_rx_close_flow(&o);
    return o.nrec;
}

#else /* not Linux: no recvmmsg; the caller keeps its per-datagram path */

int zt_rx_burst(zt_rx *rx, int fd, unsigned char *arena, size_t arena_len, zt_rx_rec *recs,
                int max_recs, int max_dgrams, int gro)
{
    (void)rx; (void)fd; (void)arena; (void)arena_len; (void)recs; (void)max_recs;
    (void)max_dgrams; (void)gro;
    return ZT_RX_EUNSUPPORTED;
}

#endif
"""
)

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE_NAME,
    C_SOURCE,
    libraries=["crypto", "sodium"],
    # Our part is kept free of -Wall -Wextra warnings; -Wextra is left off here only because
    # cffi's generated wrapper code trips it (missing field initializers).
    extra_compile_args=[] if sys.platform == "win32" else ["-Wall"],
)


def build_inplace() -> Path:
    """Compile the extension and copy it next to this file (for a source checkout)."""
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp))
        target = here / built.name
        shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    print(build_inplace())
