/* Packet armor and dearmor for ciphers 0 and 1 (Salsa20/12 + Poly1305) and 3 (AES-GMAC-SIV),
 * one call per packet and direction, in place (the Python twin: ztnode.wire.packet).
 *
 * Rules: no global mutable state (per-key state lives in a zt_aes_ctx the caller owns); every
 * length is checked before any byte is written; an error return leaves the packet as it was, so
 * the caller can run the Python path and get its exact behaviour (the one exception: an OpenSSL
 * failure inside an AES-CTR pass, which OpenSSL does not produce for in-range lengths). */
#include "zt_internal.h"

#include <stdlib.h>
#include <string.h>

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

/* Salsa20/12 with nonce = packet ID: block 0 keys Poly1305, blocks 1.. encrypt the payload. */
#define SALSA_ROUNDS 12

/* XOR the keystream from byte 64 (block 1) into buf; its own inverse. */
static void zt_salsa_xor_from_block1(unsigned char *buf, size_t n, const unsigned char *nonce8,
                                     const unsigned char mk[SALSA_KEY_BYTES])
{
    zt_salsa_xor(buf, buf, n, mk, nonce8, 1, SALSA_ROUNDS);
}

static void zt_armor_salsa(const unsigned char *salsa_key, unsigned char *pkt, size_t len,
                           int encrypt)
{
    unsigned char mk[SALSA_KEY_BYTES], block0[SALSA_BLOCK], tag[16];
    zt_mangle_key(mk, salsa_key, pkt, len);
    /* Block 0 (the Poly1305 key) and, for suite 1, the payload from block 1, in one pass. */
    zt_salsa_block0_then_xor(block0, encrypt ? pkt + IDX_VERB : NULL, len - IDX_VERB, mk, pkt,
                             SALSA_ROUNDS);
    /* The MAC covers what goes on the wire: ciphertext for suite 1, plaintext for suite 0. */
    zt_mac_poly1305(tag, pkt + IDX_VERB, len - IDX_VERB, block0);
    memcpy(pkt + IDX_MAC, tag, MAC_BYTES);
    zt_wipe(mk, sizeof mk);
    zt_wipe(block0, sizeof block0);
}

static int zt_dearmor_salsa(const unsigned char *salsa_key, unsigned char *pkt, size_t len,
                            int decrypt)
{
    unsigned char mk[SALSA_KEY_BYTES], block0[SALSA_BLOCK], tag[16];
    int ok;
    zt_mangle_key(mk, salsa_key, pkt, len);
    zt_salsa_block(block0, mk, pkt, 0, SALSA_ROUNDS);
    zt_mac_poly1305(tag, pkt + IDX_VERB, len - IDX_VERB, block0);
    /* Constant time, and nothing is decrypted unless the MAC matches: a rejected packet is
     * returned untouched. */
    ok = zt_ct_equal(tag, pkt + IDX_MAC, MAC_BYTES);
    if (ok && decrypt)
        zt_salsa_xor_from_block1(pkt + IDX_VERB, len - IDX_VERB, pkt, mk);
    zt_wipe(mk, sizeof mk);
    zt_wipe(block0, sizeof block0);
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
    zt_ni_keys ni;           /* the same keys for aesni.c's small-packet path */
};

void zt_aes_free(zt_aes_ctx *aes)
{
    if (aes == NULL)
        return;
    /* EVP_CIPHER_CTX_free wipes the key schedules. */
    zt_ossl.ctx_free(aes->gmac);
    zt_ossl.ctx_free(aes->ecb_enc);
    zt_ossl.ctx_free(aes->ecb_dec);
    zt_ossl.ctx_free(aes->ctr);
    zt_wipe(&aes->ni, sizeof aes->ni);
    free(aes);
}

zt_aes_ctx *zt_aes_new(const unsigned char *k0, const unsigned char *k1)
{
    zt_aes_ctx *aes;
    if (!zt_ossl.bound)
        return NULL; /* no libcrypto: cipher 3 stays with the Python path */
    aes = calloc(1, sizeof *aes);
    if (aes == NULL)
        return NULL;
    aes->gmac = zt_ossl.ctx_new();
    aes->ecb_enc = zt_ossl.ctx_new();
    aes->ecb_dec = zt_ossl.ctx_new();
    aes->ctr = zt_ossl.ctx_new();
    if (aes->gmac == NULL || aes->ecb_enc == NULL || aes->ecb_dec == NULL || aes->ctr == NULL)
        goto fail;
    /* The GCM IV length is 12 by default, which is what GMAC-SIV uses (iv8 || 00000000). */
    if (zt_ossl.encrypt_init(aes->gmac, zt_ossl.aes_256_gcm(), NULL, k0, NULL) != 1)
        goto fail;
    if (zt_ossl.encrypt_init(aes->ecb_enc, zt_ossl.aes_256_ecb(), NULL, k1, NULL) != 1
        || zt_ossl.set_padding(aes->ecb_enc, 0) != 1)
        goto fail;
    if (zt_ossl.decrypt_init(aes->ecb_dec, zt_ossl.aes_256_ecb(), NULL, k1, NULL) != 1
        || zt_ossl.set_padding(aes->ecb_dec, 0) != 1)
        goto fail;
    if (zt_ossl.encrypt_init(aes->ctr, zt_ossl.aes_256_ctr(), NULL, k1, NULL) != 1)
        goto fail;
    if (getenv("ZTNODE_NO_AESNI") == NULL) /* tests compare both paths; see aesni.c */
        zt_ni_setup(&aes->ni, k0, k1);
    return aes;
fail:
    zt_aes_free(aes);
    return NULL;
}

int zt_aes_small_path(const zt_aes_ctx *aes)
{
    return aes != NULL && aes->ni.on;
}

/* G = GMAC_K0(nonce = iv8 || 0^4, aad16 || payload) folded to 8 bytes (G[0:8] ^ G[8:16]).
 * GMAC is the GCM tag of an empty plaintext with that string as AAD; aad16 is the header bytes
 * 8..18 (hops masked) zero-padded to a block, so the payload starts on a block boundary. */
static int zt_gmac_folded(zt_aes_ctx *aes, const unsigned char *iv8, const unsigned char *aad16,
                          const unsigned char *payload, size_t n, unsigned char out8[8])
{
    unsigned char nonce[12], g[16], unused[16];
    int outl, i;
    if (aes->ni.on && n <= ZT_NI_SMALL) {
        zt_ni_gmac_folded(&aes->ni, iv8, aad16, payload, n, out8);
        return 1;
    }
    memcpy(nonce, iv8, 8);
    memset(nonce + 8, 0, 4);
    if (zt_ossl.encrypt_init(aes->gmac, NULL, NULL, NULL, nonce) != 1
        || zt_ossl.encrypt_update(aes->gmac, NULL, &outl, aad16, 16) != 1
        || zt_ossl.encrypt_update(aes->gmac, NULL, &outl, payload, (int)n) != 1
        || zt_ossl.encrypt_final(aes->gmac, unused, &outl) != 1
        || zt_ossl.ctrl(aes->gmac, ZT_EVP_CTRL_GCM_GET_TAG, 16, g) != 1)
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
    if (aes->ni.on && n <= ZT_NI_SMALL) {
        zt_ni_ctr(&aes->ni, tag, buf, n);
        return 1;
    }
    memcpy(iv, tag, 16);
    iv[12] &= 0x7f;
    return zt_ossl.encrypt_init(aes->ctr, NULL, NULL, NULL, iv) == 1
           && zt_ossl.encrypt_update(aes->ctr, buf, &outl, buf, (int)n) == 1;
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
    if (aes->ni.on)
        zt_ni_ecb(&aes->ni, 0, block, tag);
    else if (zt_ossl.encrypt_update(aes->ecb_enc, tag, &outl, block, 16) != 1 || outl != 16)
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
    if (aes->ni.on)
        zt_ni_ecb(&aes->ni, 1, tag, d);
    else if (zt_ossl.decrypt_update(aes->ecb_dec, d, &outl, tag, 16) != 1 || outl != 16)
        return ZT_ACCEL_ECRYPTO;
    /* SIV: the MAC is over the plaintext, so decrypt first. A rejected packet's payload is then
     * garbage, which the Python path (and the reference) also leave behind. */
    if (!zt_ctr(aes, tag, pkt + IDX_VERB, n))
        return ZT_ACCEL_ECRYPTO;
    zt_aad16(aad, pkt);
    if (!zt_gmac_folded(aes, d, aad, pkt + IDX_VERB, n, g8))
        return ZT_ACCEL_NOT_AUTHENTIC; /* cannot verify, so not authentic */
    return zt_ct_equal(g8, d + 8, 8) ? ZT_ACCEL_AUTHENTIC : ZT_ACCEL_NOT_AUTHENTIC;
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
