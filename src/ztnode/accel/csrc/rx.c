/* The receive engine's state: the object that owns the burst buffers, its key cache of known
 * peers and the networks whose TCP segments may be joined. The burst itself is rx_burst.c. */
#include "zt_internal.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

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

zt_rx_peer *zt_rx_peer_for(zt_rx *rx, uint64_t addr)
{
    int i;
    for (i = 0; i < ZT_RX_PEERS; i++)
        if (rx->peers[i].used && rx->peers[i].addr == addr)
            return &rx->peers[i];
    return NULL;
}

int zt_rx_gro_net(const zt_rx *rx, uint64_t nwid)
{
    int i;
    for (i = 0; i < rx->nnets; i++)
        if (rx->nets[i] == nwid)
            return 1;
    return 0;
}

