/* The symmetric primitives ZeroTier's legacy ciphers need, written here so that the accelerator
 * builds with a C compiler alone and runs without libsodium: Salsa20 (12 and 20 rounds, DJB's
 * original with an 8-byte nonce and a 64-bit block counter), Poly1305, SipHash-2-4 (the
 * receive engine's table hash), wiping and constant-time comparison.
 *
 * Each is written from its specification and checked in tests/accel/test_primitives.py against
 * the published vectors, the Python implementations of ztnode.crypto and, where the machine has
 * it, libsodium. Portable C: no SIMD, so a Salsa20 keystream costs about what libsodium's
 * portable code costs; Poly1305 uses 64-bit limbs with 128-bit products (gcc and clang on every
 * 64-bit target the wheels are built for). */
#include "zt_internal.h"

#include <string.h>

#if !defined(__SIZEOF_INT128__)
#error "the ztnode accelerator needs a compiler with unsigned __int128 (64-bit targets)"
#endif

static inline uint32_t ld32le(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void st32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint64_t ld64le(const unsigned char *p)
{
    return (uint64_t)ld32le(p) | ((uint64_t)ld32le(p + 4) << 32);
}

static inline void st64le(unsigned char *p, uint64_t v)
{
    st32le(p, (uint32_t)v);
    st32le(p + 4, (uint32_t)(v >> 32));
}

#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define ROTL64(v, n) (((v) << (n)) | ((v) >> (64 - (n))))

/* ------------------------------------------------------------------------------------------ */
/* Salsa20                                                                                      */

/* The quarter-round: b, c, d and a are updated in that order, each from the two before it. */
#define QR(a, b, c, d)                                                                         \
    do {                                                                                       \
        x[b] ^= ROTL32(x[a] + x[d], 7);                                                        \
        x[c] ^= ROTL32(x[b] + x[a], 9);                                                        \
        x[d] ^= ROTL32(x[c] + x[b], 13);                                                       \
        x[a] ^= ROTL32(x[d] + x[c], 18);                                                       \
    } while (0)

/* The input block: "expand 32-byte k" on the diagonal, the key's halves either side of nonce
 * and counter (words 8 and 9, which the stream functions advance). */
static void zt_salsa_setup(uint32_t in[16], const unsigned char *key, const unsigned char *nonce,
                           uint64_t counter)
{
    int i;
    in[0] = 0x61707865u;
    in[5] = 0x3320646eu;
    in[10] = 0x79622d32u;
    in[15] = 0x6b206574u;
    for (i = 0; i < 4; i++) {
        in[1 + i] = ld32le(key + 4 * i);
        in[11 + i] = ld32le(key + 16 + 4 * i);
    }
    in[6] = ld32le(nonce);
    in[7] = ld32le(nonce + 4);
    in[8] = (uint32_t)counter;
    in[9] = (uint32_t)(counter >> 32);
}

/* The rounds, then the input added back in: out = Salsa20_rounds(in) + in, as words. The rounds
 * work on a local copy the compiler can keep in registers (out may alias nothing it knows). */
static inline void zt_salsa_core(uint32_t out[16], const uint32_t in[16], int rounds)
{
    uint32_t x[16];
    int i;
    for (i = 0; i < 16; i++)
        x[i] = in[i];
    for (i = 0; i < rounds; i += 2) {
        /* column round, then row round */
        QR(0, 4, 8, 12);
        QR(5, 9, 13, 1);
        QR(10, 14, 2, 6);
        QR(15, 3, 7, 11);
        QR(0, 1, 2, 3);
        QR(5, 6, 7, 4);
        QR(10, 11, 8, 9);
        QR(15, 12, 13, 14);
    }
    for (i = 0; i < 16; i++)
        out[i] = x[i] + in[i];
}

static inline void zt_salsa_next(uint32_t in[16])
{
    if (++in[8] == 0)
        in[9]++; /* the 64-bit block counter, wrapping at 2^64 */
}

void zt_salsa_block(unsigned char out[64], const unsigned char *key, const unsigned char *nonce,
                    uint64_t counter, int rounds)
{
    uint32_t in[16], x[16];
    int i;
    zt_salsa_setup(in, key, nonce, counter);
    zt_salsa_core(x, in, rounds);
    for (i = 0; i < 16; i++)
        st32le(out + 4 * i, x[i]);
    zt_wipe(x, sizeof x);
    zt_wipe(in, sizeof in);
}

/* XOR the keystream from the state's block on into buf (out may be in): whole blocks a word at
 * a time straight from the core's output; the keystream only lands in memory for a last partial
 * block. Advances the state; wipes what it made. */
static void zt_salsa_stream(uint32_t st[16], unsigned char *out, const unsigned char *in, size_t n,
                            int rounds)
{
    uint32_t x[16];
    unsigned char ks[64];
    size_t i;
    while (n >= 64) {
        zt_salsa_core(x, st, rounds);
        zt_salsa_next(st);
        for (i = 0; i < 16; i++)
            st32le(out + 4 * i, ld32le(in + 4 * i) ^ x[i]);
        in += 64;
        out += 64;
        n -= 64;
    }
    if (n > 0) {
        zt_salsa_core(x, st, rounds);
        for (i = 0; i < 16; i++)
            st32le(ks + 4 * i, x[i]);
        for (i = 0; i < n; i++)
            out[i] = in[i] ^ ks[i];
        zt_wipe(ks, sizeof ks);
    }
    zt_wipe(x, sizeof x);
}

void zt_salsa_xor(unsigned char *out, const unsigned char *in, size_t n, const unsigned char *key,
                  const unsigned char *nonce, uint64_t counter, int rounds)
{
    uint32_t st[16];
    if (n == 0)
        return;
    zt_salsa_setup(st, key, nonce, counter);
    zt_salsa_stream(st, out, in, n, rounds);
    zt_wipe(st, sizeof st);
}

/* Keystream block 0 into `block0`, then (when `buf` is given) blocks 1.. XORed into `buf` in
 * place: the packet armor's pass, with the state set up once. */
void zt_salsa_block0_then_xor(unsigned char block0[64], unsigned char *buf, size_t n,
                              const unsigned char *key, const unsigned char *nonce, int rounds)
{
    uint32_t st[16], x[16];
    size_t i;
    zt_salsa_setup(st, key, nonce, 0);
    zt_salsa_core(x, st, rounds);
    zt_salsa_next(st);
    for (i = 0; i < 16; i++)
        st32le(block0 + 4 * i, x[i]);
    if (buf != NULL)
        zt_salsa_stream(st, buf, buf, n, rounds);
    zt_wipe(x, sizeof x);
    zt_wipe(st, sizeof st);
}

/* ------------------------------------------------------------------------------------------ */
/* Poly1305: h = (h + block) * r mod 2^130 - 5 over 16-byte blocks, tag = h + s mod 2^128.      */
/* h and r are held in 44/44/42-bit limbs so each product fits 128 bits with room for sums.    */

#define M44 0xfffffffffffULL
#define M42 0x3ffffffffffULL

void zt_poly1305(unsigned char tag[16], const unsigned char *m, size_t n,
                 const unsigned char key[32])
{
    uint64_t t0 = ld64le(key), t1 = ld64le(key + 8);
    /* r is clamped (the top four bits of every 32-bit word and the low two of the upper three
     * cleared), then split into limbs. */
    const uint64_t r0 = t0 & 0xffc0fffffffULL;
    const uint64_t r1 = ((t0 >> 44) | (t1 << 20)) & 0xfffffc0ffffULL;
    const uint64_t r2 = (t1 >> 24) & 0x00ffffffc0fULL;
    /* 2^130 = 5 mod p, and the limbs' weights put an extra 2^2 on the wrapped products. */
    const uint64_t s1 = r1 * (5 << 2), s2 = r2 * (5 << 2);
    uint64_t h0 = 0, h1 = 0, h2 = 0, c, g0, g1, g2, mask;
    unsigned char last[16];
    int i;
    unsigned __int128 d0, d1, d2;
    while (n > 0) {
        const unsigned char *b = m;
        uint64_t hibit = 1ULL << 40; /* the 2^128 bit of a whole block, in limb 2 */
        if (n < 16) {
            /* A short final block: its bytes, a 1, then zeros, and no 2^128 bit. */
            memset(last, 0, sizeof last);
            memcpy(last, m, n);
            last[n] = 1;
            b = last;
            hibit = 0;
        }
        t0 = ld64le(b);
        t1 = ld64le(b + 8);
        h0 += t0 & M44;
        h1 += ((t0 >> 44) | (t1 << 20)) & M44;
        h2 += ((t1 >> 24) & M42) | hibit;
        d0 = (unsigned __int128)h0 * r0 + (unsigned __int128)h1 * s2 + (unsigned __int128)h2 * s1;
        d1 = (unsigned __int128)h0 * r1 + (unsigned __int128)h1 * r0 + (unsigned __int128)h2 * s2;
        d2 = (unsigned __int128)h0 * r2 + (unsigned __int128)h1 * r1 + (unsigned __int128)h2 * r0;
        c = (uint64_t)(d0 >> 44);
        h0 = (uint64_t)d0 & M44;
        d1 += c;
        c = (uint64_t)(d1 >> 44);
        h1 = (uint64_t)d1 & M44;
        d2 += c;
        c = (uint64_t)(d2 >> 42);
        h2 = (uint64_t)d2 & M42;
        h0 += c * 5;
        c = h0 >> 44;
        h0 &= M44;
        h1 += c;
        if (n < 16)
            break;
        m += 16;
        n -= 16;
    }
    /* Carry fully (twice round: the wrap into h0 can carry once more), then subtract p if
     * h >= p, in constant time. */
    for (i = 0; i < 2; i++) {
        c = h1 >> 44;
        h1 &= M44;
        h2 += c;
        c = h2 >> 42;
        h2 &= M42;
        h0 += c * 5;
        c = h0 >> 44;
        h0 &= M44;
        h1 += c;
    }
    g0 = h0 + 5;
    c = g0 >> 44;
    g0 &= M44;
    g1 = h1 + c;
    c = g1 >> 44;
    g1 &= M44;
    g2 = h2 + c - (1ULL << 42);
    mask = (g2 >> 63) - 1; /* all ones when h + 5 - 2^130 did not go negative: h >= p */
    h0 = (h0 & ~mask) | (g0 & mask);
    h1 = (h1 & ~mask) | (g1 & mask);
    h2 = (h2 & ~mask) | (g2 & mask);
    /* Add s (the key's second half) mod 2^128. */
    t0 = ld64le(key + 16);
    t1 = ld64le(key + 24);
    h0 += t0 & M44;
    c = h0 >> 44;
    h0 &= M44;
    h1 += (((t0 >> 44) | (t1 << 20)) & M44) + c;
    c = h1 >> 44;
    h1 &= M44;
    h2 += ((t1 >> 24) & M42) + c;
    st64le(tag, h0 | (h1 << 44));
    st64le(tag + 8, (h1 >> 20) | (h2 << 24));
    zt_wipe(last, sizeof last);
}

/* libsodium's Poly1305, where the machine has it: its SSE2 code is about a fifth faster than the
 * portable one above on packet-sized messages. Bound once at import (zt_poly1305_bind), before
 * any packet; afterwards only read. */
typedef int (*zt_poly_fn)(unsigned char *, const unsigned char *, unsigned long long,
                          const unsigned char *);
static zt_poly_fn zt_poly_bound;

int zt_poly1305_bind(void *fn)
{
    /* An object pointer from the symbol lookup; POSIX guarantees it converts to a function one.
     * NULL goes back to ours (tests run the packet path both ways). */
    memcpy(&zt_poly_bound, &fn, sizeof fn);
    return 0;
}

const char *zt_poly1305_impl(void)
{
    return zt_poly_bound != NULL ? "libsodium" : "ztnode";
}

void zt_mac_poly1305(unsigned char tag[16], const unsigned char *m, size_t n,
                     const unsigned char key[32])
{
    if (zt_poly_bound != NULL)
        zt_poly_bound(tag, m, n, key);
    else
        zt_poly1305(tag, m, n, key);
}

/* ------------------------------------------------------------------------------------------ */
/* SipHash-2-4: a keyed hash for table positions that a sender cannot aim at.                  */

#define SIPROUND                                                                               \
    do {                                                                                       \
        v0 += v1;                                                                              \
        v1 = ROTL64(v1, 13);                                                                   \
        v1 ^= v0;                                                                              \
        v0 = ROTL64(v0, 32);                                                                   \
        v2 += v3;                                                                              \
        v3 = ROTL64(v3, 16);                                                                   \
        v3 ^= v2;                                                                              \
        v0 += v3;                                                                              \
        v3 = ROTL64(v3, 21);                                                                   \
        v3 ^= v0;                                                                              \
        v2 += v1;                                                                              \
        v1 = ROTL64(v1, 17);                                                                   \
        v1 ^= v2;                                                                              \
        v2 = ROTL64(v2, 32);                                                                   \
    } while (0)

uint64_t zt_siphash24(const unsigned char *p, size_t n, const unsigned char key[16])
{
    const uint64_t k0 = ld64le(key), k1 = ld64le(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t b = (uint64_t)n << 56, w;
    size_t i, whole = n & ~(size_t)7;
    for (i = 0; i < whole; i += 8) {
        w = ld64le(p + i);
        v3 ^= w;
        SIPROUND;
        SIPROUND;
        v0 ^= w;
    }
    for (i = 0; i < (n & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ------------------------------------------------------------------------------------------ */
/* Secrets: wiping the compiler cannot drop, comparison whose time does not depend on where the */
/* inputs differ.                                                                               */

void zt_wipe(void *p, size_t n)
{
    memset(p, 0, n);
    /* The barrier tells the compiler the zeroed memory is read, so the memset stays. */
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

int zt_ct_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
    volatile unsigned char d = 0;
    size_t i;
    for (i = 0; i < n; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}
