/* AES-GMAC-SIV's block work for small packets with the CPU's AES and carry-less multiply
 * instructions (x86-64 AES-NI and PCLMULQDQ), beside OpenSSL's EVP path in armor.c.
 *
 * Why: a small packet (a 1-byte TCP segment, an ACK, a keepalive) is four EVP calls under
 * OpenSSL 3: the GMAC, the ECB block, the CTR pass, each re-initialised with a new IV per
 * packet. OpenSSL 3 spends ~3 800 instructions a packet looking up parameters for those
 * re-initialisations against a few hundred for the AES and GHASH work itself, ~15 000 of a
 * small round trip's ~365 000 (docs/performance.md, issue 16). Here the round keys and GHASH's
 * H are computed once per peer key and a packet costs the blocks it has. Bulk packets stay with
 * OpenSSL (ZT_NI_SMALL): its pipelined CTR and aggregated GHASH are faster per byte than the
 * one-block-at-a-time loops here. Both paths compute the same function: the tests compare them
 * on every packet size across the threshold (tests/accel).
 *
 * The arithmetic: GHASH in GCM's bit-reflected field, done on byte-reversed blocks so that
 * PCLMULQDQ's product needs one shift left and the standard reduction by x^128 + x^7 + x^2 +
 * x + 1 (NIST SP 800-38D; Gueron and Kounavis, "Intel Carry-Less Multiplication Instruction
 * and its Usage for Computing the GCM Mode"). The AES-256 key expansion is FIPS-197's, with
 * AESKEYGENASSIST doing SubWord/RotWord. */
#include "zt_internal.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define ZT_NI_TARGET __attribute__((target("aes,pclmul,ssse3,sse2")))

int zt_ni_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
           __builtin_cpu_supports("ssse3");
}

#define LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define ST(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))

/* Words 0..3 of the previous pair's first key, each XORed with all before it, then with t's
 * broadcast word: one step of the expansion. */
ZT_NI_TARGET static __m128i zt_ni_fold(__m128i k, __m128i t)
{
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    return _mm_xor_si128(k, t);
}

#define ZT_NI_EXPAND(i, rcon)                                                                   \
    do {                                                                                        \
        rk[i] = zt_ni_fold(rk[(i)-2],                                                           \
                           _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i)-1], rcon), 0xff)); \
        if ((i) + 1 < 15)                                                                       \
            rk[(i) + 1] = zt_ni_fold(                                                           \
                rk[(i)-1], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i], 0x00), 0xaa));   \
    } while (0)

ZT_NI_TARGET static void zt_ni_expand(unsigned char out[15][16], const unsigned char key[32])
{
    __m128i rk[15];
    int i;
    rk[0] = LD(key);
    rk[1] = LD(key + 16);
    ZT_NI_EXPAND(2, 0x01);
    ZT_NI_EXPAND(4, 0x02);
    ZT_NI_EXPAND(6, 0x04);
    ZT_NI_EXPAND(8, 0x08);
    ZT_NI_EXPAND(10, 0x10);
    ZT_NI_EXPAND(12, 0x20);
    ZT_NI_EXPAND(14, 0x40);
    for (i = 0; i < 15; i++)
        ST(out[i], rk[i]);
    zt_wipe(rk, sizeof rk); /* not a loop of stores the compiler may drop as dead */
}

ZT_NI_TARGET static __m128i zt_ni_enc(const unsigned char rk[15][16], __m128i b)
{
    int i;
    b = _mm_xor_si128(b, LD(rk[0]));
    for (i = 1; i < 14; i++)
        b = _mm_aesenc_si128(b, LD(rk[i]));
    return _mm_aesenclast_si128(b, LD(rk[14]));
}

ZT_NI_TARGET static __m128i zt_ni_dec(const unsigned char dk[15][16], __m128i b)
{
    int i;
    b = _mm_xor_si128(b, LD(dk[0]));
    for (i = 1; i < 14; i++)
        b = _mm_aesdec_si128(b, LD(dk[i]));
    return _mm_aesdeclast_si128(b, LD(dk[14]));
}

ZT_NI_TARGET static __m128i zt_ni_bswap(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* a * b in GF(2^128), both byte-reversed GHASH elements. */
ZT_NI_TARGET static __m128i zt_ni_gfmul(__m128i a, __m128i b)
{
    __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10),
                                _mm_clmulepi64_si128(a, b, 0x01));
    __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
    __m128i c1, c2, c3, t1, t2, t3;
    lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
    /* The 256-bit product hi:lo shifted left by one bit (the reflection's off-by-one). */
    c1 = _mm_srli_epi32(lo, 31);
    c2 = _mm_srli_epi32(hi, 31);
    lo = _mm_slli_epi32(lo, 1);
    hi = _mm_slli_epi32(hi, 1);
    c3 = _mm_srli_si128(c1, 12);
    c2 = _mm_slli_si128(c2, 4);
    c1 = _mm_slli_si128(c1, 4);
    lo = _mm_or_si128(lo, c1);
    hi = _mm_or_si128(_mm_or_si128(hi, c2), c3);
    /* Reduction modulo x^128 + x^7 + x^2 + x + 1, first and second phase. */
    t1 = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)),
                       _mm_slli_epi32(lo, 25));
    t2 = _mm_srli_si128(t1, 4);
    lo = _mm_xor_si128(lo, _mm_slli_si128(t1, 12));
    t3 = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)),
                       _mm_srli_epi32(lo, 7));
    t3 = _mm_xor_si128(t3, t2);
    lo = _mm_xor_si128(lo, t3);
    return _mm_xor_si128(hi, lo);
}

ZT_NI_TARGET int zt_ni_setup(zt_ni_keys *ni, const unsigned char *k0, const unsigned char *k1)
{
    int i;
    memset(ni, 0, sizeof *ni);
    if (!zt_ni_supported())
        return 0;
    zt_ni_expand(ni->k0, k0);
    zt_ni_expand(ni->k1, k1);
    /* The equivalent inverse cipher's keys (FIPS-197 5.3.5). */
    ST(ni->d1[0], LD(ni->k1[14]));
    for (i = 1; i < 14; i++)
        ST(ni->d1[i], _mm_aesimc_si128(LD(ni->k1[14 - i])));
    ST(ni->d1[14], LD(ni->k1[0]));
    ST(ni->h, zt_ni_bswap(zt_ni_enc(ni->k0, _mm_setzero_si128())));
    ni->on = 1;
    return 1;
}

ZT_NI_TARGET void zt_ni_gmac_folded(const zt_ni_keys *ni, const unsigned char *iv8,
                                    const unsigned char aad16[16], const unsigned char *payload,
                                    size_t n, unsigned char out8[8])
{
    __m128i h = LD(ni->h), x, t;
    unsigned char last[16], j0[16], lens[16], g[16];
    uint64_t bits = (uint64_t)(16 + n) * 8;
    size_t i;
    x = zt_ni_gfmul(zt_ni_bswap(LD(aad16)), h);
    for (i = 0; i + 16 <= n; i += 16)
        x = zt_ni_gfmul(_mm_xor_si128(x, zt_ni_bswap(LD(payload + i))), h);
    if (i < n) {
        memset(last, 0, sizeof last);
        memcpy(last, payload + i, n - i);
        x = zt_ni_gfmul(_mm_xor_si128(x, zt_ni_bswap(LD(last))), h);
    }
    /* The lengths block: the AAD's length in bits, then the (empty) text's. */
    memset(lens, 0, sizeof lens);
    for (i = 0; i < 8; i++)
        lens[i] = (unsigned char)(bits >> (56 - 8 * i));
    x = zt_ni_gfmul(_mm_xor_si128(x, zt_ni_bswap(LD(lens))), h);
    memcpy(j0, iv8, 8);
    memset(j0 + 8, 0, 7);
    j0[15] = 1;
    t = _mm_xor_si128(zt_ni_bswap(x), zt_ni_enc(ni->k0, LD(j0)));
    ST(g, t);
    for (i = 0; i < 8; i++)
        out8[i] = g[i] ^ g[8 + i];
}

ZT_NI_TARGET void zt_ni_ecb(const zt_ni_keys *ni, int decrypt, const unsigned char in[16],
                            unsigned char out[16])
{
    ST(out, decrypt ? zt_ni_dec(ni->d1, LD(in)) : zt_ni_enc(ni->k1, LD(in)));
}

ZT_NI_TARGET void zt_ni_ctr(const zt_ni_keys *ni, const unsigned char tag[16], unsigned char *buf,
                            size_t n)
{
    unsigned char cb[16], ks[16];
    uint32_t ctr;
    size_t i, j;
    memcpy(cb, tag, 16);
    cb[12] &= 0x7f; /* as armor.c: the 32-bit counter cannot wrap within a packet */
    ctr = ((uint32_t)cb[12] << 24) | ((uint32_t)cb[13] << 16) | ((uint32_t)cb[14] << 8) | cb[15];
    for (i = 0; i < n; i += 16) {
        size_t take = n - i < 16 ? n - i : 16;
        cb[12] = (unsigned char)(ctr >> 24);
        cb[13] = (unsigned char)(ctr >> 16);
        cb[14] = (unsigned char)(ctr >> 8);
        cb[15] = (unsigned char)ctr;
        ST(ks, zt_ni_enc(ni->k1, LD(cb)));
        if (take == 16) {
            ST(buf + i, _mm_xor_si128(LD(buf + i), LD(ks)));
        } else {
            for (j = 0; j < take; j++)
                buf[i + j] ^= ks[j];
        }
        ctr++;
    }
    zt_wipe(ks, sizeof ks);
}

#else /* no AES-NI path on this platform: armor.c uses OpenSSL for every packet */

int zt_ni_supported(void)
{
    return 0;
}

int zt_ni_setup(zt_ni_keys *ni, const unsigned char *k0, const unsigned char *k1)
{
    (void)k0;
    (void)k1;
    memset(ni, 0, sizeof *ni);
    return 0;
}

void zt_ni_gmac_folded(const zt_ni_keys *ni, const unsigned char *iv8,
                       const unsigned char aad16[16], const unsigned char *payload, size_t n,
                       unsigned char out8[8])
{
    (void)ni, (void)iv8, (void)aad16, (void)payload, (void)n, (void)out8;
}

void zt_ni_ecb(const zt_ni_keys *ni, int decrypt, const unsigned char in[16],
               unsigned char out[16])
{
    (void)ni, (void)decrypt, (void)in, (void)out;
}

void zt_ni_ctr(const zt_ni_keys *ni, const unsigned char tag[16], unsigned char *buf, size_t n)
{
    (void)ni, (void)tag, (void)buf, (void)n;
}

#endif
