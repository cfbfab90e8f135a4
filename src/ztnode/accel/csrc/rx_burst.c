/* The receive burst: recvmmsg, reassembly within the burst, dearmor with cached keys, and
 * coalescing of in-order TCP segments carried in FRAMEs (what Linux calls GRO).
 *
 * Why: at 50 MB/s a node receives ~40 000 datagrams a second, and per datagram the Python
 * path (read, reassemble, dearmor, dispatch, IP, TCP) costs tens of microseconds. Here one
 * call reads up to ZT_RX_MAX_DGRAMS datagrams and hands back a few records; a run of
 * consecutive segments of one TCP flow becomes one large segment, so Python does its
 * per-segment work once per run. Everything unusual (relayed, unknown peer, bad fragment,
 * HELLO, compressed) goes back to the caller untouched, as a DATAGRAM or WHOLE record, and
 * the Python path decides exactly as before. The key cache is only a cache: the caller checks
 * every PLAIN record's key against the peer's current one. */
#include "zt_internal.h"

#include <errno.h>
#include <string.h>
#ifdef __linux__
#include <arpa/inet.h>
#endif

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

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
    uint64_t *ids; /* packet ids of PLAIN records, at most one per datagram */
    unsigned int nids;
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
    r->ids = o->nids;
    if (kind == ZT_RX_PLAIN)
        o->ids[o->nids++] = zt_be64(o->arena + o->pos);
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
                    /* Its packet id first (right after the record's own ids), then its payload
                     * moves down over its own headers onto the end of the record. */
                    o->ids[o->nids++] = zt_be64(p);
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
                int max_recs, uint64_t *ids, int max_dgrams, int gro)
{
    zt_rx_info info[ZT_RX_MAX_DGRAMS];
    zt_rx_group groups[ZT_RX_MAX_DGRAMS];
    zt_rx_out o;
    int n, i, k, ngroups = 0;
    if (max_dgrams < 1 || max_dgrams > ZT_RX_MAX_DGRAMS || max_recs < max_dgrams || ids == NULL ||
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
    o.ids = ids;
    o.nids = 0;
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
                int max_recs, uint64_t *ids, int max_dgrams, int gro)
{
    (void)rx; (void)fd; (void)arena; (void)arena_len; (void)recs; (void)max_recs;
    (void)ids; (void)max_dgrams; (void)gro;
    return ZT_RX_EUNSUPPORTED;
}

#endif
