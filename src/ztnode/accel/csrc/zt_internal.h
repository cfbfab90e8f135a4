/* What the accelerator's source files share and Python does not see: the ZeroTier packet
 * layout, the receive engine's state, and small byte-order helpers. */
#ifndef ZT_INTERNAL_H
#define ZT_INTERNAL_H

/* recvmmsg and struct mmsghdr; every source file includes this header before any other. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "zt_accel.h"

#ifdef __linux__
#include <netinet/in.h>
#include <sys/socket.h>
#endif

/* Functions shared between files but not part of the interface stay out of the symbol table. */
#define ZT_HIDDEN __attribute__((visibility("hidden")))

/* Packet layout (ZeroTier 1.x header): id/iv 0..7, dest 8..12, source 13..17, flags 18,
 * MAC 19..26, verb and payload from 27. */
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
#define CIPHER_TRUSTED_PATH 2
#define CIPHER_AES_GMAC_SIV 3

#define SALSA_KEY_BYTES 32
#define SALSA_BLOCK 64
#define MAC_BYTES 8

/* The receive engine's bounds: cached peer keys (a hashed table of sets, so a lookup is a few
 * compares however many peers), networks whose segments may be joined, and the largest IP
 * packet a joined segment may become. */
#define ZT_RX_PEER_SETS 1024
#define ZT_RX_PEER_WAYS 4
#define ZT_RX_PEERS (ZT_RX_PEER_SETS * ZT_RX_PEER_WAYS)
#define ZT_RX_SALT_BYTES 16
#define ZT_RX_NETS 16
#define ZT_RX_GRO_MAX_IP 65000

#define IDX_SOURCE 13
#define IDX_PAYLOAD 28
#define FRAG_HEADER 16
#define FRAG_INDICATOR 0xff
#define FLAG_FRAGMENTED 0x40
#define MAX_FRAGMENTS 16
/* What a sender may cut one packet into (the reference's ZT_MAX_PACKET_FRAGMENTS; a receiver
 * holds up to MAX_FRAGMENTS, what the 4-bit count can say). */
#define TX_MAX_FRAGMENTS 7
#define VERB_HELLO 0x01
#define VERB_FRAME 0x06
#define BEACON_LENGTH 13


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

/* A packet being reassembled: its pieces' bytes in `buf` (a head whole, fragments without their
 * header), in arrival order, with where each piece landed. */
typedef struct {
    uint64_t pid;
    uint64_t born;         /* ms, when its first piece arrived */
    unsigned char name[28];  /* a sockaddr_in6 at most */
    unsigned int namelen;  /* the sender, as recvmmsg named it; 0 when the entry is free */
    unsigned int have;     /* bit k: piece k is here */
    unsigned int total;    /* pieces in all, once a fragment said; 0 before */
    unsigned int trusted;  /* its head came from a peer whose key is cached */
    unsigned int fill;
    unsigned int wire;     /* datagram bytes of the pieces held */
    uint16_t off[MAX_FRAGMENTS];
    uint16_t len[MAX_FRAGMENTS];
    unsigned char *buf;    /* ZT_ACCEL_MAX_PACKET bytes */
} zt_rx_frag;

typedef struct {
    uint64_t last;         /* ms of the last refill */
    uint32_t tokens;
} zt_rx_bucket;

struct zt_rx {
    uint64_t self;
    unsigned char salt[ZT_RX_SALT_BYTES]; /* keys the table hashes, so no one can aim at a set */
    zt_rx_peer peers[ZT_RX_PEERS];
    zt_rx_frag frags[ZT_RX_REASM_SETS * ZT_RX_REASM_WAYS];
    unsigned char *frag_bufs;
    zt_rx_bucket gate[ZT_RX_GATE_BUCKETS];
    zt_rx_bucket global;
    uint32_t prefix_rate, prefix_burst, global_rate, global_burst;
    uint64_t trusted[ZT_RX_TRUSTED]; /* sender hash | 0, and when it last authenticated */
    uint64_t trusted_at[ZT_RX_TRUSTED];
    int relay;             /* we relay for others (a root): packets for cached peers pass */
    uint64_t nets[ZT_RX_NETS];
    int nnets;
    zt_tpath tpaths[ZT_RX_TPATHS];
    int ntpaths;
    unsigned char *slots;
#ifdef __linux__
    struct mmsghdr msgs[ZT_RX_MAX_DGRAMS];
    struct iovec iov[ZT_RX_MAX_DGRAMS];
    struct sockaddr_storage names[ZT_RX_MAX_DGRAMS];
#endif
    zt_rx_stats stats;
};

static inline uint64_t zt_be40(const unsigned char *p)
{
    return ((uint64_t)p[0] << 32) | ((uint64_t)p[1] << 24) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 8) | (uint64_t)p[4];
}

static inline uint64_t zt_be64(const unsigned char *p)
{
    return (zt_be40(p) << 24) | ((uint64_t)p[5] << 16) | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

static inline unsigned int zt_be16(const unsigned char *p)
{
    return ((unsigned int)p[0] << 8) | p[1];
}

static inline uint32_t zt_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* OpenSSL's EVP types stay opaque: only pointers to them cross this file. */
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct engine_st ENGINE;

/* The OpenSSL calls the AES-GMAC-SIV path makes, resolved by zt_crypto_bind (ossl.c). The
 * signatures are OpenSSL's since 1.1.0; EVP_CTRL_GCM_GET_TAG's value is part of that ABI. */
#define ZT_EVP_CTRL_GCM_GET_TAG 0x10
typedef struct {
    int bound;
    EVP_CIPHER_CTX *(*ctx_new)(void);
    void (*ctx_free)(EVP_CIPHER_CTX *);
    int (*encrypt_init)(EVP_CIPHER_CTX *, const EVP_CIPHER *, ENGINE *, const unsigned char *,
                        const unsigned char *);
    int (*encrypt_update)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int);
    int (*encrypt_final)(EVP_CIPHER_CTX *, unsigned char *, int *);
    int (*decrypt_init)(EVP_CIPHER_CTX *, const EVP_CIPHER *, ENGINE *, const unsigned char *,
                        const unsigned char *);
    int (*decrypt_update)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int);
    int (*set_padding)(EVP_CIPHER_CTX *, int);
    int (*ctrl)(EVP_CIPHER_CTX *, int, int, void *);
    const EVP_CIPHER *(*aes_256_gcm)(void);
    const EVP_CIPHER *(*aes_256_ecb)(void);
    const EVP_CIPHER *(*aes_256_ctr)(void);
} zt_ossl_api;

/* ossl.c */
ZT_HIDDEN extern zt_ossl_api zt_ossl;

/* primitives.c: the packet armor's Salsa20 pass, and its MAC (libsodium's Poly1305 where
 * bound, else ours). */
ZT_HIDDEN void zt_salsa_block0_then_xor(unsigned char block0[64], unsigned char *buf, size_t n,
                                        const unsigned char *key, const unsigned char *nonce,
                                        int rounds);
ZT_HIDDEN void zt_mac_poly1305(unsigned char tag[16], const unsigned char *m, size_t n,
                               const unsigned char key[32]);

/* aesni.c: AES-GMAC-SIV's blocks for small packets with AES-NI and PCLMULQDQ (x86-64; `on` is
 * 0 elsewhere, or where the CPU lacks them, and armor.c then uses OpenSSL for every packet).
 * Payloads of at most ZT_NI_SMALL bytes take this path. */
#define ZT_NI_SMALL 512
typedef struct {
    int on;
    unsigned char k0[15][16]; /* AES-256 round keys of K0 (GMAC) */
    unsigned char k1[15][16]; /* of K1 (the tag's ECB block, CTR) */
    unsigned char d1[15][16]; /* K1's inverse-cipher round keys */
    unsigned char h[16];      /* GHASH's H = AES_K0(0), byte-reversed */
} zt_ni_keys;
ZT_HIDDEN int zt_ni_supported(void);
ZT_HIDDEN int zt_ni_setup(zt_ni_keys *ni, const unsigned char *k0, const unsigned char *k1);
ZT_HIDDEN void zt_ni_gmac_folded(const zt_ni_keys *ni, const unsigned char *iv8,
                                 const unsigned char aad16[16], const unsigned char *payload,
                                 size_t n, unsigned char out8[8]);
ZT_HIDDEN void zt_ni_ecb(const zt_ni_keys *ni, int decrypt, const unsigned char in[16],
                         unsigned char out[16]);
ZT_HIDDEN void zt_ni_ctr(const zt_ni_keys *ni, const unsigned char tag[16], unsigned char *buf,
                         size_t n);

/* checksum.c */
ZT_HIDDEN uint64_t zt_pseudo_sum(int v6, const unsigned char *addrs, unsigned int tcp_len);
ZT_HIDDEN void zt_ipv4_fill(unsigned char *ip, unsigned int total, unsigned int id);

/* rx.c */
ZT_HIDDEN zt_rx_peer *zt_rx_peer_for(zt_rx *rx, uint64_t addr);
ZT_HIDDEN int zt_rx_gro_net(const zt_rx *rx, uint64_t nwid);
ZT_HIDDEN uint64_t zt_rx_hash(const zt_rx *rx, const unsigned char *p, size_t n);

/* rx_guard.c */
ZT_HIDDEN void zt_rx_drop(zt_rx *rx, uint64_t *reason, unsigned int datagrams, unsigned int bytes);
ZT_HIDDEN int zt_rx_gate(zt_rx *rx, const void *from, unsigned int wire, uint64_t now);
ZT_HIDDEN void zt_rx_trust(zt_rx *rx, const void *from, unsigned int namelen, uint64_t now);
ZT_HIDDEN int zt_rx_trusted(const zt_rx *rx, const void *from, unsigned int namelen, uint64_t now);
ZT_HIDDEN int zt_rx_tpath_ok(const zt_rx *rx, const void *from, uint64_t id);
ZT_HIDDEN zt_rx_frag *zt_rx_frag_piece(zt_rx *rx, const void *from, unsigned int namelen,
                                       uint64_t pid, const unsigned char *d, size_t n,
                                       int no, int total, int trusted, uint64_t now);
ZT_HIDDEN void zt_rx_frag_assemble(const zt_rx_frag *f, unsigned char *dst);
ZT_HIDDEN unsigned int zt_rx_frag_size(const zt_rx_frag *f);
ZT_HIDDEN unsigned int zt_rx_frag_pieces(const zt_rx_frag *f);
ZT_HIDDEN void zt_rx_frag_release(zt_rx *rx, zt_rx_frag *f);

/* tx_frame.c: check a route, seal a built packet and cut it into datagrams (shared by both
 * send paths). */
ZT_HIDDEN int zt_tx_route_ok(const zt_aes_ctx *aes, int cipher, const unsigned char *zthdr,
                             size_t mtu);
ZT_HIDDEN void zt_tx_frame_head(unsigned char *pkt, const unsigned char *zthdr,
                               const unsigned char *pid, uint64_t nwid, unsigned int ethertype);
ZT_HIDDEN int zt_tx_seal(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
                         unsigned char *pkt, size_t len, size_t mtu, unsigned char *out,
                         size_t out_cap, size_t *at, unsigned int *lens, int *nout,
                         int max_out);

#endif
