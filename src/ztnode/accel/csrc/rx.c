/* The receive engine's state: the object that owns the burst buffers, its key cache of known
 * peers, the networks whose TCP segments may be joined and the guard's policy. The burst itself
 * is rx_burst.c; reassembly and rate gates are rx_guard.c. */
#include "zt_internal.h"

#include <stdlib.h>
#include <string.h>

/* `salt16`: 16 secret random bytes from the caller (randomness is injected, never drawn here). */
zt_rx *zt_rx_new(uint64_t self_addr, const unsigned char *salt16)
{
    zt_rx *rx;
    size_t i;
    if (salt16 == NULL)
        return NULL;
    rx = calloc(1, sizeof(zt_rx));
    if (rx == NULL)
        return NULL;
    rx->slots = malloc(ZT_RX_ARENA);
    rx->frag_bufs = malloc((size_t)ZT_RX_REASM_SETS * ZT_RX_REASM_WAYS * ZT_ACCEL_MAX_PACKET);
    if (rx->slots == NULL || rx->frag_bufs == NULL) {
        zt_rx_free(rx);
        return NULL;
    }
    for (i = 0; i < (size_t)ZT_RX_REASM_SETS * ZT_RX_REASM_WAYS; i++)
        rx->frags[i].buf = rx->frag_bufs + i * ZT_ACCEL_MAX_PACKET;
    memcpy(rx->salt, salt16, sizeof rx->salt);
    rx->self = self_addr;
    zt_rx_set_policy(rx, 0, ZT_RX_GATE_PREFIX_RATE, ZT_RX_GATE_PREFIX_BURST,
                     ZT_RX_GATE_GLOBAL_RATE, ZT_RX_GATE_GLOBAL_BURST);
#ifdef __linux__
    for (i = 0; i < ZT_RX_MAX_DGRAMS; i++) {
        rx->iov[i].iov_base = rx->slots + i * ZT_RX_SLOT;
        rx->iov[i].iov_len = ZT_RX_SLOT;
        rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
        rx->msgs[i].msg_hdr.msg_iovlen = 1;
        rx->msgs[i].msg_hdr.msg_name = &rx->names[i];
    }
#endif
    return rx;
}

void zt_rx_free(zt_rx *rx)
{
    if (rx == NULL)
        return;
    zt_wipe(rx->peers, sizeof rx->peers);
    free(rx->frag_bufs);
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

/* SipHash under the engine's secret salt: where an address or packet id lands in a table. */
uint64_t zt_rx_hash(const zt_rx *rx, const unsigned char *p, size_t n)
{
    return zt_siphash24(p, n, rx->salt);
}

static zt_rx_peer *zt_rx_peer_set(zt_rx *rx, uint64_t addr)
{
    unsigned char a[8];
    int i;
    for (i = 0; i < 8; i++)
        a[i] = (unsigned char)(addr >> (8 * i));
    return &rx->peers[(zt_rx_hash(rx, a, 8) % ZT_RX_PEER_SETS) * ZT_RX_PEER_WAYS];
}

/* Cache a peer's key (replacing any older one). -1 when its set is full: not cached. The caller
 * keeps the key's owner (and so `aes`) alive until zt_rx_forget or zt_rx_free. */
int zt_rx_set_peer(zt_rx *rx, uint64_t addr, zt_aes_ctx *aes, const unsigned char *salsa_key)
{
    zt_rx_peer *set = zt_rx_peer_set(rx, addr);
    int i, slot = -1;
    for (i = 0; i < ZT_RX_PEER_WAYS; i++) {
        if (set[i].used && set[i].addr == addr) {
            slot = i;
            break;
        }
        if (!set[i].used && slot < 0)
            slot = i;
    }
    if (slot < 0)
        return -1;
    set[slot].addr = addr;
    set[slot].aes = aes;
    memcpy(set[slot].salsa, salsa_key, SALSA_KEY_BYTES);
    set[slot].used = 1;
    return 0;
}

void zt_rx_forget(zt_rx *rx, uint64_t addr)
{
    zt_rx_peer *set = zt_rx_peer_set(rx, addr);
    int i;
    for (i = 0; i < ZT_RX_PEER_WAYS; i++) {
        if (set[i].used && set[i].addr == addr) {
            zt_wipe(set[i].salsa, SALSA_KEY_BYTES);
            set[i].used = 0;
            set[i].aes = NULL;
        }
    }
}

zt_rx_peer *zt_rx_peer_for(zt_rx *rx, uint64_t addr)
{
    zt_rx_peer *set = zt_rx_peer_set(rx, addr);
    int i;
    for (i = 0; i < ZT_RX_PEER_WAYS; i++)
        if (set[i].used && set[i].addr == addr)
            return &set[i];
    return NULL;
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

/* Prefix containment as the reference's InetAddress::containsAddress: the first `bits` bits
 * equal (the table holds networks with their host bits zero). Python reference:
 * PhysicalPaths.inbound_trusted in ztnode/core/trusted.py. */
int zt_tpath_match(const zt_tpath *paths, int n, int v6, const unsigned char *ip, uint64_t id)
{
    int i;
    if (id == 0 || paths == NULL || ip == NULL)
        return 0;
    for (i = 0; i < n; i++) {
        const zt_tpath *p = &paths[i];
        unsigned int full, rest;
        if (p->id != id || (p->v6 != 0) != (v6 != 0) || p->bits > (v6 ? 128u : 32u))
            continue;
        full = p->bits / 8;
        rest = p->bits % 8;
        if (memcmp(p->net, ip, full) != 0)
            continue;
        if (rest && ((p->net[full] ^ ip[full]) & (0xffu << (8 - rest)) & 0xffu))
            continue;
        return 1;
    }
    return 0;
}

int zt_rx_set_tpaths(zt_rx *rx, const zt_tpath *paths, int n)
{
    if (n < 0 || n > ZT_RX_TPATHS || (n > 0 && paths == NULL)) {
        rx->ntpaths = 0;
        return ZT_RX_EARGS;
    }
    if (n > 0)
        memcpy(rx->tpaths, paths, (size_t)n * sizeof(zt_tpath));
    rx->ntpaths = n;
    return 0;
}

int zt_rx_gro_net(const zt_rx *rx, uint64_t nwid)
{
    int i;
    for (i = 0; i < rx->nnets; i++)
        if (rx->nets[i] == nwid)
            return 1;
    return 0;
}

/* Whether we relay (packets for cached peers then pass ungated) and the gates' rates; the
 * buckets start full. */
void zt_rx_set_policy(zt_rx *rx, int relay, uint32_t prefix_rate, uint32_t prefix_burst,
                      uint32_t global_rate, uint32_t global_burst)
{
    size_t i;
    rx->relay = relay != 0;
    if (rx->prefix_rate == prefix_rate && rx->prefix_burst == prefix_burst &&
        rx->global_rate == global_rate && rx->global_burst == global_burst)
        return;
    rx->prefix_rate = prefix_rate;
    rx->prefix_burst = prefix_burst;
    rx->global_rate = global_rate;
    rx->global_burst = global_burst;
    for (i = 0; i < ZT_RX_GATE_BUCKETS; i++) {
        rx->gate[i].tokens = prefix_burst;
        rx->gate[i].last = 0;
    }
    rx->global.tokens = global_burst;
    rx->global.last = 0;
}
