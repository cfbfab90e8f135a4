/* The receive guard: what the burst refuses before Python, with bounded state.
 *
 * Why: a flood of hostile datagrams must cost a few hundred nanoseconds each, not the tens of
 * microseconds of the Python path, and must not grow memory. Two parts, both fixed-size and
 * keyed by a secret salt so no sender can aim at one slot:
 *  - Reassembly across bursts: pieces of fragmented packets wait here (ZT_RX_REASM_SETS sets of
 *    ZT_RX_REASM_WAYS entries, each a packet's worth of bytes) until the packet is whole. A new
 *    packet takes a free or expired way, else the oldest one whose head did not come from a peer
 *    we know, else the oldest: a flood of orphan pieces churns among itself and leaves the
 *    packets of known peers alone. Duplicate pieces, inconsistent counts and oversize sets are
 *    refused.
 *  - Rate gates: whatever cannot be authenticated here (HELLO from someone new, packets from
 *    peers whose key is not cached, packets to relay) passes a token bucket for its source
 *    prefix (IPv4 /24, IPv6 /48, as the reference groups senders for its HELLO gate) and one for
 *    the socket, so the Python path sees a bounded rate of unauthenticated work whatever is
 *    offered, and traffic from known peers, authenticated in C, is never behind it.
 * Every refusal is counted by reason in zt_rx_stats. */
#include "zt_internal.h"

#include <string.h>

#ifdef __linux__

void zt_rx_drop(zt_rx *rx, uint64_t *reason, unsigned int datagrams, unsigned int bytes)
{
    *reason += datagrams;
    rx->stats.dropped += datagrams;
    rx->stats.dropped_bytes += bytes;
}

/* Take one token; refill by elapsed time first. A bucket whose burst is 0 is off. */
static int zt_rx_take(zt_rx_bucket *b, uint32_t rate, uint32_t burst, uint64_t now)
{
    if (burst == 0)
        return 1;
    if (now > b->last) {
        uint64_t add = rate ? (now - b->last) * rate / 1000 : 0;
        if (add >= (uint64_t)(burst - b->tokens)) {
            b->tokens = burst;
            b->last = now;
        } else if (add > 0) {
            b->tokens += (uint32_t)add;
            b->last += add * 1000 / rate; /* keep the fraction of a token already earned */
        }
    }
    if (b->tokens == 0)
        return 0;
    b->tokens--;
    return 1;
}

int zt_rx_gate(zt_rx *rx, const void *from, unsigned int wire, uint64_t now)
{
    const struct sockaddr_storage *ss = from;
    unsigned char prefix[7];
    size_t n;
    zt_rx_bucket *b;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sa = from;
        prefix[0] = 4;
        memcpy(prefix + 1, &sa->sin_addr.s_addr, 3);
        n = 4;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sa = from;
        prefix[0] = 6;
        memcpy(prefix + 1, sa->sin6_addr.s6_addr, 6);
        n = 7;
    } else {
        prefix[0] = 0;
        n = 1;
    }
    b = &rx->gate[zt_rx_hash(rx, prefix, n) % ZT_RX_GATE_BUCKETS];
    if (!zt_rx_take(b, rx->prefix_rate, rx->prefix_burst, now)) {
        zt_rx_drop(rx, &rx->stats.gated_prefix, 1, wire);
        return 0;
    }
    if (!zt_rx_take(&rx->global, rx->global_rate, rx->global_burst, now)) {
        zt_rx_drop(rx, &rx->stats.gated_global, 1, wire);
        return 0;
    }
    return 1;
}

/* Remember that `from` just sent an authenticated packet. A hash collision can only make an
 * untrusted sender look trusted, which sends its packet through the gate to the node's own
 * check: never a wrong refusal. */
void zt_rx_trust(zt_rx *rx, const void *from, unsigned int namelen, uint64_t now)
{
    uint64_t h = zt_rx_hash(rx, from, namelen) | 1;
    size_t at = (size_t)(h % ZT_RX_TRUSTED);
    rx->trusted[at] = h;
    rx->trusted_at[at] = now;
}

int zt_rx_trusted(const zt_rx *rx, const void *from, unsigned int namelen, uint64_t now)
{
    uint64_t h = zt_rx_hash(rx, from, namelen) | 1;
    size_t at = (size_t)(h % ZT_RX_TRUSTED);
    return rx->trusted[at] == h && now - rx->trusted_at[at] < ZT_RX_TRUSTED_MS;
}

/* A cipher-2 packet from `from` carrying trusted-path id `id`: admissible under the trusted
 * networks the node configured (zt_tpath_match)? */
int zt_rx_tpath_ok(const zt_rx *rx, const void *from, uint64_t id)
{
    const struct sockaddr_storage *ss = from;
    if (rx->ntpaths == 0)
        return 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sa = from;
        return zt_tpath_match(rx->tpaths, rx->ntpaths, 0,
                              (const unsigned char *)&sa->sin_addr.s_addr, id);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sa = from;
        return zt_tpath_match(rx->tpaths, rx->ntpaths, 1, sa->sin6_addr.s6_addr, id);
    }
    return 0;
}

unsigned int zt_rx_frag_pieces(const zt_rx_frag *f)
{
    return (unsigned int)__builtin_popcount(f->have);
}

unsigned int zt_rx_frag_size(const zt_rx_frag *f)
{
    return f->fill;
}

void zt_rx_frag_release(zt_rx *rx, zt_rx_frag *f)
{
    rx->stats.reasm_held -= zt_rx_frag_pieces(f);
    f->namelen = 0;
    f->have = 0;
}

/* Drop an entry's pieces, counted under `reason`. */
static void zt_rx_frag_discard(zt_rx *rx, zt_rx_frag *f, uint64_t *reason)
{
    zt_rx_drop(rx, reason, zt_rx_frag_pieces(f), f->wire);
    zt_rx_frag_release(rx, f);
}

/* The entry for (pid, sender), or a way taken for it; NULL never (some way can always go). */
static zt_rx_frag *zt_rx_frag_entry(zt_rx *rx, const void *from, unsigned int namelen,
                                    uint64_t pid, uint64_t now)
{
    unsigned char key[8];
    zt_rx_frag *set, *victim = NULL;
    int i;
    for (i = 0; i < 8; i++)
        key[i] = (unsigned char)(pid >> (8 * i));
    set = &rx->frags[(zt_rx_hash(rx, key, 8) % ZT_RX_REASM_SETS) * ZT_RX_REASM_WAYS];
    for (i = 0; i < ZT_RX_REASM_WAYS; i++) {
        zt_rx_frag *f = &set[i];
        if (f->namelen == 0)
            continue;
        if (now > f->born && now - f->born > ZT_RX_REASM_TIMEOUT_MS)
            zt_rx_frag_discard(rx, f, &rx->stats.reasm_expired);
        else if (f->pid == pid && f->namelen == namelen && memcmp(f->name, from, namelen) == 0)
            return f;
    }
    for (i = 0; i < ZT_RX_REASM_WAYS && victim == NULL; i++)
        if (set[i].namelen == 0)
            victim = &set[i];
    if (victim == NULL) { /* the oldest stranger, else the oldest */
        zt_rx_frag *stranger = NULL, *oldest = NULL;
        for (i = 0; i < ZT_RX_REASM_WAYS; i++) {
            if (!set[i].trusted && (stranger == NULL || set[i].born < stranger->born))
                stranger = &set[i];
            if (oldest == NULL || set[i].born < oldest->born)
                oldest = &set[i];
        }
        victim = stranger != NULL ? stranger : oldest;
        zt_rx_frag_discard(rx, victim, &rx->stats.reasm_evicted);
    }
    victim->pid = pid;
    victim->born = now;
    memcpy(victim->name, from, namelen);
    victim->namelen = namelen;
    victim->have = 0;
    victim->total = 0;
    victim->trusted = 0;
    victim->fill = 0;
    victim->wire = 0;
    return victim;
}

/* File one piece (`no` 0 is the head, with `total` 0; fragments say the total). Returns the
 * entry when the packet is whole (the caller assembles, then releases it), else NULL: the piece
 * is held, or refused and counted. */
zt_rx_frag *zt_rx_frag_piece(zt_rx *rx, const void *from, unsigned int namelen, uint64_t pid,
                             const unsigned char *d, size_t n, int no, int total, int trusted,
                             uint64_t now)
{
    zt_rx_frag *f;
    const unsigned char *body = no ? d + FRAG_HEADER : d;
    size_t len = no ? n - FRAG_HEADER : n;
    if (namelen == 0 || namelen > sizeof f->name) {
        zt_rx_drop(rx, &rx->stats.bad_fragment, 1, (unsigned int)n);
        return NULL;
    }
    f = zt_rx_frag_entry(rx, from, namelen, pid, now);
    if (f->have & (1u << no)) {
        zt_rx_drop(rx, &rx->stats.dup_fragment, 1, (unsigned int)n);
        return NULL;
    }
    if ((total && f->total && f->total != (unsigned int)total) ||
        f->fill + len > ZT_ACCEL_MAX_PACKET) {
        zt_rx_drop(rx, &rx->stats.bad_fragment, 1, (unsigned int)n);
        zt_rx_frag_discard(rx, f, &rx->stats.bad_fragment);
        return NULL;
    }
    if (total)
        f->total = (unsigned int)total;
    if (no == 0)
        f->trusted = trusted != 0;
    memcpy(f->buf + f->fill, body, len);
    f->off[no] = (uint16_t)f->fill;
    f->len[no] = (uint16_t)len;
    f->fill += (unsigned int)len;
    f->wire += (unsigned int)n;
    f->have |= 1u << no;
    rx->stats.reasm_held++;
    if (f->total && f->have == (1u << f->total) - 1)
        return f;
    return NULL;
}

/* The whole packet, pieces in order, into dst (zt_rx_frag_size bytes). */
void zt_rx_frag_assemble(const zt_rx_frag *f, unsigned char *dst)
{
    unsigned int k, at = 0;
    for (k = 0; k < f->total; k++) {
        memcpy(dst + at, f->buf + f->off[k], f->len[k]);
        at += f->len[k];
    }
}

#endif
