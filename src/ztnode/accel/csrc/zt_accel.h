/* The C accelerator's interface: what Python calls through cffi (ztnode.accel).
 *
 * Why C at all: per packet, the Python glue around a few cheap cipher calls, and per datagram the
 * read-reassemble-dearmor path, cost as much as the work itself; these functions do a whole
 * packet (armor, dearmor), a whole receive burst (recvmmsg, reassembly, dearmor, TCP segment
 * coalescing) or a whole large TCP segment (cut, checksum, armor, fragment) per foreign call.
 * The Python code each stands in for remains the reference, checked byte for byte in tests.
 *
 * The region between the cdef markers is read by ztnode/accel/_build.py into cffi's cdef as is,
 * so the record layouts are declared once for both sides. */
#ifndef ZT_ACCEL_H
#define ZT_ACCEL_H

#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the functions below change meaning, so a stale build is never used. */
#define ZT_ACCEL_ABI 11

/* Return codes. Armor: OK or an error. Dearmor: AUTHENTIC / NOT_AUTHENTIC or an error. Every
 * error except ECRYPTO from inside a CTR pass is returned before the packet is touched. */
#define ZT_ACCEL_OK 0
#define ZT_ACCEL_AUTHENTIC 1
#define ZT_ACCEL_NOT_AUTHENTIC 0
#define ZT_ACCEL_ELENGTH (-1)  /* a length out of bounds (a packet: outside MIN..MAX_PACKET) */
#define ZT_ACCEL_ECIPHER (-2)  /* armor: a suite other than 0, 1, 3 */
#define ZT_ACCEL_ENOKEY (-3)   /* cipher 3 but no AES context given: build one and call again */
#define ZT_ACCEL_ECRYPTO (-4)  /* an OpenSSL call failed (allocation); the packet is unchanged */

/* zt_crypto_bind: bound (also when it already was), or an address missing / a wrong count. */
#define ZT_CRYPTO_BOUND 0
#define ZT_CRYPTO_ESYMBOL (-2)

/* Packet size bounds: the shortest armored packet and the reassembly buffer (MTU x 7 pieces). */
#define ZT_ACCEL_MIN_PACKET 28
#define ZT_ACCEL_MAX_PACKET 10024

/* Receive bursts: at most ZT_RX_MAX_DGRAMS datagrams of up to ZT_RX_SLOT bytes per call. */
#define ZT_RX_MAX_DGRAMS 64
#define ZT_RX_SLOT 16384
#define ZT_RX_ARENA (ZT_RX_MAX_DGRAMS * ZT_RX_SLOT)

/* The receive guard (rx_guard.c): pieces of fragmented packets wait in a table of
 * ZT_RX_REASM_SETS x ZT_RX_REASM_WAYS entries for at most ZT_RX_REASM_TIMEOUT_MS; what cannot be
 * authenticated in C passes a token bucket per source prefix (IPv4 /24, IPv6 /48, hashed into
 * ZT_RX_GATE_BUCKETS) and one for the whole socket before Python sees it. Rates are per second,
 * bursts in records; a burst of 0 turns that bucket off (everything passes). */
#define ZT_RX_REASM_SETS 64
#define ZT_RX_REASM_WAYS 4
#define ZT_RX_REASM_TIMEOUT_MS 5000
#define ZT_RX_GATE_BUCKETS 4096
#define ZT_RX_GATE_PREFIX_RATE 200
#define ZT_RX_GATE_PREFIX_BURST 400
#define ZT_RX_GATE_GLOBAL_RATE 2000
#define ZT_RX_GATE_GLOBAL_BURST 4000
/* Senders that authenticated lately (a hashed table): a member relays only on paths it trusts,
 * and trust needs authenticated traffic, so packets not for us from anyone else are refused. */
#define ZT_RX_TRUSTED 4096
#define ZT_RX_TRUSTED_MS 600000
/* Trusted physical networks (local.conf "physical" with a trustedPathId; the reference's
 * ZT_MAX_CONFIGURABLE_PATHS): a cipher-2 packet carries no MAC, only the network's id, so the
 * guard passes it ungated when its source is inside a network with that id (the node checks
 * again, against the same table) and refuses it otherwise. */
#define ZT_RX_TPATHS 32

/* Record kinds. Records are thirteen uint64_t fields, no padding, so Python reads a burst's
 * records with one struct.iter_unpack("=13Q") instead of a foreign attribute access per field.
 * A PLAIN record's `ids` is where, in the ids array the caller passes, the packet ids of the
 * `frames` packets it stands for begin (one each: replay checks need every one). A
 * PLAIN_CHECKED record is a PLAIN one whose packet is a FRAME on a joining network carrying,
 * over IPv4 without options or fragments or over IPv6 without extension headers, either one
 * ACK or ACK+PSH TCP segment (or several joined) or one UDP datagram with a checksum: C
 * verified its IPv4 header checksum and its TCP or UDP checksum (or wrote them, for joined
 * segments), so the stack need not sum them again. */
#define ZT_RX_DATAGRAM 0
#define ZT_RX_WHOLE 1
#define ZT_RX_PLAIN 2
#define ZT_RX_PLAIN_CHECKED 3

#define ZT_RX_EUNSUPPORTED (-1000)
#define ZT_RX_EARGS (-1001)

/* zt_tx_tcp, zt_tx_frame and zt_tx_udp errors. */
#define ZT_TX_EARGS (-1)
#define ZT_TX_ESPACE (-2)
#define ZT_TX_ECRYPTO (-3)

/* cdef-begin */
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
    uint64_t ids;
    /* Read here so the node need not parse them again from the bytes: the packet's id (of a
     * joined record, its first packet's), and for a PLAIN record that is an uncompressed FRAME
     * (frame = 1) its network id. */
    uint64_t pid;
    uint64_t nwid;
    uint64_t frame;
} zt_rx_rec;

typedef struct {
    uint64_t datagrams;
    uint64_t bursts;
    uint64_t reassembled;
    uint64_t decrypted;
    uint64_t mac_failed;
    uint64_t coalesced;
    uint64_t truncated;        /* longer than a slot: dropped */
    /* Datagrams dropped in C, by reason (a reassembly's pieces count one each), and in all. */
    uint64_t too_short;
    uint64_t too_long;
    uint64_t from_self;
    uint64_t bad_fragment;
    uint64_t dup_fragment;
    uint64_t reasm_evicted;
    uint64_t reasm_expired;
    uint64_t bad_cipher;
    uint64_t mac_dropped;      /* a cached peer's key refused it */
    uint64_t gated_prefix;     /* unauthenticated, over its source prefix's rate */
    uint64_t gated_global;     /* unauthenticated, over the socket's rate */
    uint64_t not_for_us;       /* to relay, from a sender that never authenticated (a member) */
    uint64_t tpath_refused;    /* cipher 2 from outside every trusted network with its id */
    uint64_t tpath_passed;     /* cipher 2 from a trusted network with its id: handed over */
    uint64_t dropped;
    uint64_t dropped_bytes;
    uint64_t reasm_held;       /* pieces waiting in the reassembly table now */
} zt_rx_stats;

/* One trusted physical network: `net` holds the network address (IPv4 in its first 4 bytes),
 * host bits zero; `id` is never 0. */
typedef struct {
    uint64_t id;
    unsigned char net[16];
    uint32_t bits;
    uint32_t v6;
} zt_tpath;
/* cdef-end */

typedef struct zt_aes_ctx zt_aes_ctx;
typedef struct zt_rx zt_rx;

/* primitives.c: Salsa20 (rounds 12 or 20), Poly1305 and SipHash-2-4 of our own, so that no
 * libsodium is needed; out and in of zt_salsa_xor may be the same buffer. */
void zt_salsa_block(unsigned char out[64], const unsigned char *key, const unsigned char *nonce,
                    uint64_t counter, int rounds);
void zt_salsa_xor(unsigned char *out, const unsigned char *in, size_t n, const unsigned char *key,
                  const unsigned char *nonce, uint64_t counter, int rounds);
void zt_poly1305(unsigned char tag[16], const unsigned char *m, size_t n,
                 const unsigned char key[32]);
uint64_t zt_siphash24(const unsigned char *p, size_t n, const unsigned char key[16]);
void zt_wipe(void *p, size_t n);
/* The packet path's Poly1305 may be libsodium's crypto_onetimeauth_poly1305 (its address, given
 * once at import; NULL returns to ours); zt_poly1305 itself is always ours. zt_poly1305_impl
 * names the one in use. */
int zt_poly1305_bind(void *fn);
const char *zt_poly1305_impl(void);
int zt_ct_equal(const unsigned char *a, const unsigned char *b, size_t n);

/* idhash.c: the identity hash's table and mixing steps. `digest` holds SHA-512 of the public
 * key and receives the hash; `ks` is the whole Salsa20/20 keystream of that digest (ks_len
 * must be 10 MiB: 32 768 + 131 072 blocks, else ZT_ACCEL_ELENGTH and nothing is touched), used
 * as work memory and left scrambled. */
int zt_identity_mix(unsigned char digest[64], unsigned char *ks, size_t ks_len);

/* ossl.c: OpenSSL's EVP calls for cipher 3, bound at run time: zt_crypto_symbol(i) names the
 * i-th (NULL past the last), zt_crypto_bind takes their addresses in that order. Until it is
 * bound, zt_aes_new returns NULL. */
const char *zt_crypto_symbol(size_t i);
int zt_crypto_bind(void *const *fns, size_t n);
int zt_crypto_bound(void);

zt_aes_ctx *zt_aes_new(const unsigned char *k0, const unsigned char *k1);
void zt_aes_free(zt_aes_ctx *aes);
/* 1 when the context takes small packets through aesni.c (AES-NI and PCLMULQDQ present, and
 * ZTNODE_NO_AESNI unset when it was made), 0 when OpenSSL does every packet. */
int zt_aes_small_path(const zt_aes_ctx *aes);
int zt_armor(zt_aes_ctx *aes, const unsigned char *salsa_key, unsigned char *pkt, size_t len,
             int cipher);
int zt_dearmor(zt_aes_ctx *aes, const unsigned char *salsa_key, unsigned char *pkt, size_t len);

unsigned int zt_ones_sum(const unsigned char *p, size_t n, uint64_t initial);

int zt_rx_supported(void);
zt_rx *zt_rx_new(uint64_t self_addr, const unsigned char *salt16);
void zt_rx_free(zt_rx *rx);
zt_rx_stats *zt_rx_get_stats(zt_rx *rx);
int zt_rx_set_peer(zt_rx *rx, uint64_t addr, zt_aes_ctx *aes, const unsigned char *salsa_key);
void zt_rx_forget(zt_rx *rx, uint64_t addr);
int zt_rx_set_networks(zt_rx *rx, const uint64_t *nwids, int n);
void zt_rx_set_policy(zt_rx *rx, int relay, uint32_t prefix_rate, uint32_t prefix_burst,
                      uint32_t global_rate, uint32_t global_burst);
/* Whether a cipher-2 packet from `ip` (4 or 16 bytes, by `v6`) with trusted-path id `id` is
 * admissible under `paths` (the reference's shouldInboundPathBeTrusted; id 0 never is). */
int zt_tpath_match(const zt_tpath *paths, int n, int v6, const unsigned char *ip, uint64_t id);
/* Replace the engine's trusted networks (at most ZT_RX_TPATHS; ZT_RX_EARGS otherwise, and the
 * table is left empty). */
int zt_rx_set_tpaths(zt_rx *rx, const zt_tpath *paths, int n);
int zt_rx_burst(zt_rx *rx, int fd, unsigned char *arena, size_t arena_len, zt_rx_rec *recs,
                int max_recs, uint64_t *ids, int max_dgrams, int gro, uint64_t now_ms);

/* fast.c: creates the module of CPython functions that call the per-packet entry points
 * (zt_tx_tcp, zt_tx_frame, zt_tx_udp, zt_rx_burst, and a burst's authenticated records to the
 * sink) without cffi's argument conversion, and puts it in sys.modules under `name`. 0, or -1
 * if it could not (the loader then keeps the cffi calls). */
int zt_fast_register(const char *name);

/* cipher: 1, 3, or 2 (a trusted path: no crypto; zthdr's MAC field holds the id). */
int zt_tx_tcp(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
              const unsigned char *zthdr, const unsigned char *pids, size_t npids,
              uint64_t nwid, unsigned int ethertype,
              const unsigned char *hdr, size_t hdr_len, unsigned int ip_id,
              const unsigned char *payload, size_t payload_len, size_t seg_size,
              unsigned int tcp_flags_last, size_t mtu,
              unsigned char *out, size_t out_cap, unsigned int *lens, int max_out);

/* One FRAME (ethertype and payload) on a chosen route: zthdr is the route's 28-byte header
 * template (as for zt_tx_tcp), pid the packet's 8-byte ID; the datagrams (head and fragments
 * for mtu) go back to back into out, their lengths into lens. Returns how many, or a negative
 * ZT_TX_* error. */
int zt_tx_frame(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
                const unsigned char *zthdr, const unsigned char *pid, uint64_t nwid,
                unsigned int ethertype, const unsigned char *payload, size_t payload_len,
                size_t mtu, unsigned char *out, size_t out_cap, unsigned int *lens, int max_out);

/* tx_udp.c: one UDP datagram built and sent as zt_tx_frame sends a frame: `hdr` is its IP
 * header (IPv4 without options, or IPv6) and UDP header with the ports set; lengths, the IPv4
 * ident `ip_id` and both checksums are filled in. Returns the datagrams' count or a ZT_TX_*
 * error. */
int zt_tx_udp(zt_aes_ctx *aes, const unsigned char *salsa_key, int cipher,
              const unsigned char *zthdr, const unsigned char *pid, uint64_t nwid,
              unsigned int ethertype, const unsigned char *hdr, size_t hdr_len,
              unsigned int ip_id, const unsigned char *payload, size_t payload_len, size_t mtu,
              unsigned char *out, size_t out_cap, unsigned int *lens, int max_out);

#endif
