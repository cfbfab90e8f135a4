/* The receive burst: recvmmsg, then per datagram the guard's refusals and reassembly
 * (rx_guard.c), dearmor with cached keys, and coalescing of in-order TCP segments carried in
 * FRAMEs (what Linux calls GRO).
 *
 * Why: at 50 MB/s a node receives ~40 000 datagrams a second, and under a flood hundreds of
 * thousands; per datagram the Python path (read, reassemble, dearmor, dispatch, IP, TCP) costs
 * tens of microseconds. Here one call reads up to ZT_RX_MAX_DGRAMS datagrams and hands back a
 * few records: malformed datagrams, forgeries under a cached key and unauthenticated work over
 * its rate are refused and counted; a run of consecutive segments of one TCP flow becomes one
 * large segment, so Python does its per-segment work once per run. What C cannot authenticate
 * (HELLO from someone new, unknown peers, packets to relay, beacons) goes back to the caller
 * untouched, as a DATAGRAM or WHOLE record, and the Python path decides exactly as before. The
 * key cache is only a cache: the caller checks every PLAIN record's key against the peer's
 * current one, and forgets a peer's key when the peer goes. */
#include "zt_internal.h"

#include <errno.h>
#include <string.h>
#ifdef __linux__
#include <arpa/inet.h>
#endif

#ifdef __linux__

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

/* The IP packet in the plaintext FRAME at p (len bytes) when the frame is on a joining network
 * and carries protocol `proto` over IPv4 without options or fragments (its header checksum
 * verified) or over IPv6 without extension headers, the IP lengths exactly the frame's and at
 * least `min_body` bytes after the IP header: its first byte, *v6 saying which; else NULL. */
static const unsigned char *zt_rx_ip_of(const zt_rx *rx, const unsigned char *p, size_t len,
                                        unsigned int proto, size_t min_body, int *v6)
{
    const unsigned char *ip = p + IDX_PAYLOAD + 10;
    size_t iplen;
    if (len < IDX_PAYLOAD + 10 + 20 + min_body || p[IDX_VERB] != VERB_FRAME)
        return NULL;
    if (!zt_rx_gro_net(rx, zt_be64(p + IDX_PAYLOAD)))
        return NULL;
    iplen = len - (IDX_PAYLOAD + 10);
    switch (zt_be16(p + IDX_PAYLOAD + 8)) {
    case 0x0800:
        if (ip[0] != 0x45 || zt_be16(ip + 2) != iplen || (zt_be16(ip + 6) & 0x3fff) != 0 ||
            ip[9] != proto || zt_ones_sum(ip, 20, 0) != 0xffff)
            return NULL;
        *v6 = 0;
        return ip;
    case 0x86dd:
        if ((ip[0] >> 4) != 6 || iplen < 40 + min_body || zt_be16(ip + 4) != iplen - 40 ||
            ip[6] != proto)
            return NULL;
        *v6 = 1;
        return ip;
    default:
        return NULL;
    }
}

/* Whether the plaintext FRAME at p (len bytes) on a joining network is one UDP datagram whose
 * checksums verify (zt_rx_ip_of's shapes), its UDP length exactly the frame's and a UDP
 * checksum present (a zero one, allowed over IPv4, is left to the stack). */
static int zt_rx_udp_checked(const zt_rx *rx, const unsigned char *p, size_t len)
{
    const unsigned char *ip, *udp;
    size_t ulen;
    int v6;
    if ((ip = zt_rx_ip_of(rx, p, len, 17, 8, &v6)) == NULL)
        return 0;
    udp = ip + (v6 ? 40 : 20);
    ulen = (size_t)(p + len - udp);
    if (zt_be16(udp + 4) != ulen || (udp[6] == 0 && udp[7] == 0))
        return 0;
    return zt_ones_sum(udp, ulen, zt_ones_sum(v6 ? ip + 8 : ip + 12, v6 ? 32 : 8, 0) + 17u +
                                      ulen) == 0xffff;
}

/* If the plaintext FRAME at p (len bytes) is an in-order-able TCP segment, describe it in f
 * (ip_off relative to p) and return 1. Checksums are verified here: a coalesced segment is
 * re-checksummed as a whole, so a corrupt one must never join. */
static int zt_rx_tcp_shape(const zt_rx *rx, const unsigned char *p, size_t len, zt_rx_flow *f)
{
    const unsigned char *ip, *tcp;
    size_t iplen, tlen;
    unsigned int hl, flags;
    int v6;
    if ((ip = zt_rx_ip_of(rx, p, len, 6, 20, &v6)) == NULL)
        return 0;
    f->nwid = zt_be64(p + IDX_PAYLOAD);
    iplen = len - (IDX_PAYLOAD + 10);
    f->v6 = v6;
    f->ihl = v6 ? 40 : 20;
    memcpy(f->addrs, v6 ? ip + 8 : ip + 12, v6 ? 32 : 8);
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
        zt_ipv4_fill(ip, 20 + f->tcp_len, zt_be16(ip + 4));
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
    const unsigned char *p = o->arena + o->pos;
    r->kind = kind;
    r->off = (unsigned int)o->pos;
    r->len = (unsigned int)len;
    r->pieces = pieces;
    r->frames = 1;
    r->wire_bytes = wire;
    r->src = 0;
    r->ids = o->nids;
    r->pid = len >= 8 ? zt_be64(p) : 0;
    r->frame = 0;
    r->nwid = 0;
    if (kind == ZT_RX_PLAIN || kind == ZT_RX_PLAIN_CHECKED) {
        o->ids[o->nids++] = r->pid;
        if (len >= IDX_PAYLOAD + 10 && p[IDX_VERB] == VERB_FRAME) {
            r->frame = 1;
            r->nwid = zt_be64(p + IDX_PAYLOAD);
        }
    }
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

/* A datagram the node judges itself (to relay, a beacon), if the gate lets it through. */
static void zt_rx_emit_gated(zt_rx_out *o, int i, uint64_t now)
{
    if (zt_rx_gate(o->rx, &o->rx->names[i], o->rx->msgs[i].msg_len, now))
        zt_rx_emit_datagram(o, i);
}

/* An authenticated packet (decrypted, or from a trusted path) at o->pos, from a peer whose key
 * is cached: a PLAIN record, or joined onto the previous one when it continues that TCP flow
 * and came the same way (one cipher suite per record: the node counts records by it). */
static void zt_rx_emit_plain(zt_rx_out *o, int one, unsigned char *p, size_t len,
                             unsigned int pieces, unsigned int wire, uint64_t src, uint64_t now)
{
    zt_rx *rx = o->rx;
    zt_rx_rec *r;
    zt_rx_flow fl;
    zt_rx_trust(rx, &rx->names[one], rx->msgs[one].msg_hdr.msg_namelen, now);
    fl.valid = 0;
    if (o->gro && zt_rx_tcp_shape(rx, p, len, &fl)) {
        zt_rx_flow *c = &o->flow;
        zt_rx_rec *last = c->valid ? &o->recs[c->rec] : NULL;
        unsigned int add = fl.tcp_len - fl.thl;
        if (last != NULL && last->off + last->len == o->pos && c->src == fl.src &&
            c->nwid == fl.nwid && c->v6 == fl.v6 && c->thl == fl.thl &&
            memcmp(c->addrs, fl.addrs, fl.v6 ? 32 : 8) == 0 &&
            memcmp(c->ports, fl.ports, 4) == 0 &&
            c->next_seq == fl.next_seq - add && c->ack == fl.ack &&
            c->window == fl.window && memcmp(c->opts, fl.opts, 12) == 0 &&
            !(c->flags & 0x08) && c->ihl + c->tcp_len + add <= ZT_RX_GRO_MAX_IP &&
            ((o->arena[last->off + IDX_FLAGS] ^ p[IDX_FLAGS]) & FLAGS_CIPHER_MASK) == 0 &&
            zt_same_sender(rx, c->sender, one)) {
            /* Its packet id first (right after the record's own ids), then its payload
             * moves down over its own headers onto the end of the record. */
            o->ids[o->nids++] = zt_be64(p);
            memmove(p, p + fl.ip_off + fl.ihl + fl.thl, add);
            last->len += add;
            last->pieces += pieces;
            last->frames += 1;
            last->wire_bytes += wire;
            c->next_seq = fl.next_seq;
            c->flags |= fl.flags;
            c->tcp_len += add;
            o->pos += add;
            rx->stats.coalesced++;
            return;
        }
        zt_rx_close_flow(o);
        r = zt_rx_new_rec(o, ZT_RX_PLAIN_CHECKED, one, len, pieces, wire);
        r->src = src;
        fl.rec = (unsigned int)(r - o->recs);
        fl.sender = one;
        o->flow = fl;
        return;
    }
    zt_rx_close_flow(o);
    r = zt_rx_new_rec(o, o->gro && zt_rx_udp_checked(rx, p, len) ? ZT_RX_PLAIN_CHECKED
                                                                 : ZT_RX_PLAIN,
                      one, len, pieces, wire);
    r->src = src;
}

/* A whole packet for us, in datagram `one` or in reassembly entry f (completed by datagram
 * `one`): decrypted with the sender's cached key (or, cipher 2, admitted by the trusted
 * networks) and coalesced onto the previous record when it continues that TCP flow; refused
 * here when that key (or every trusted network) rejects it; otherwise handed over armored,
 * through the gate (cipher 2 from a trusted network: ungated). */
static void zt_rx_emit_whole(zt_rx_out *o, int one, const zt_rx_frag *f, uint64_t now)
{
    zt_rx *rx = o->rx;
    size_t len = f ? zt_rx_frag_size(f) : rx->msgs[one].msg_len;
    unsigned int pieces = f ? zt_rx_frag_pieces(f) : 1;
    unsigned int wire = f ? f->wire : (unsigned int)len;
    unsigned char *p = o->arena + o->pos;
    uint64_t src;
    int cipher;
    zt_rx_peer *peer;
    zt_rx_rec *r;
    if (f) {
        zt_rx_frag_assemble(f, p);
        rx->stats.reassembled++;
    } else {
        memcpy(p, rx->slots + (size_t)one * ZT_RX_SLOT, len);
    }
    src = zt_be40(p + IDX_SOURCE);
    cipher = (p[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> 3;
    if (cipher > CIPHER_AES_GMAC_SIV) {
        zt_rx_drop(rx, &rx->stats.bad_cipher, pieces, wire);
        return;
    }
    if (cipher == CIPHER_TRUSTED_PATH) {
        /* No MAC to check: the configured network and the id vouch for it, as in the node
         * (Switch.process_packet). From a peer whose key is cached it goes on as an
         * authenticated packet; from anyone else, armored as it came and ungated (the node
         * parks it for WHOIS, as the reference does). */
        if (!zt_rx_tpath_ok(rx, &rx->names[one], zt_be64(p + IDX_MAC))) {
            zt_rx_drop(rx, &rx->stats.tpath_refused, pieces, wire);
            return;
        }
        rx->stats.tpath_passed++;
        if (zt_rx_peer_for(rx, src) != NULL) {
            zt_rx_emit_plain(o, one, p, len, pieces, wire, src, now);
            return;
        }
        zt_rx_trust(rx, &rx->names[one], rx->msgs[one].msg_hdr.msg_namelen, now);
        zt_rx_close_flow(o);
        r = zt_rx_new_rec(o, ZT_RX_WHOLE, one, len, pieces, wire);
        r->src = src;
        return;
    }
    peer = zt_rx_peer_for(rx, src);
    if (peer != NULL && (cipher != CIPHER_AES_GMAC_SIV || peer->aes != NULL)) {
        int rc = zt_dearmor(peer->aes, peer->salsa, p, len);
        if (rc == ZT_ACCEL_AUTHENTIC) {
            rx->stats.decrypted++;
            zt_rx_emit_plain(o, one, p, len, pieces, wire, src, now);
            return;
        }
        rx->stats.mac_failed++;
        /* The cache holds the peer's current key (the node forgets it whenever the peer goes),
         * so this is a forgery or a corrupt packet. Except a HELLO in the clear: it may carry
         * another identity claiming the address, a collision the node itself must judge (a
         * failed suite-0 check leaves the packet as it was). */
        if (cipher != CIPHER_POLY1305_NONE || (p[IDX_VERB] & 0x1f) != VERB_HELLO) {
            zt_rx_drop(rx, &rx->stats.mac_dropped, pieces, wire);
            return;
        }
    }
    if (!zt_rx_gate(rx, &rx->names[one], wire, now))
        return;
    zt_rx_close_flow(o);
    r = zt_rx_new_rec(o, ZT_RX_WHOLE, one, len, pieces, wire);
    r->src = src;
}

/* Not for us: relayed by a root for a peer it knows; otherwise judged by the node through the
 * gate, except from a sender that never authenticated: a member relays only on paths it trusts,
 * and that takes authenticated traffic. */
static void zt_rx_emit_relay(zt_rx_out *o, int i, uint64_t dest, uint64_t now)
{
    zt_rx *rx = o->rx;
    if (rx->relay && zt_rx_peer_for(rx, dest) != NULL)
        zt_rx_emit_datagram(o, i);
    else if (rx->relay || zt_rx_trusted(rx, &rx->names[i], rx->msgs[i].msg_hdr.msg_namelen, now))
        zt_rx_emit_gated(o, i, now);
    else
        zt_rx_drop(rx, &rx->stats.not_for_us, 1, rx->msgs[i].msg_len);
}

/* One datagram: refused if malformed, filed if a piece, emitted otherwise. */
static void zt_rx_one(zt_rx_out *o, int i, uint64_t now)
{
    zt_rx *rx = o->rx;
    const unsigned char *d = rx->slots + (size_t)i * ZT_RX_SLOT;
    const struct msghdr *h = &rx->msgs[i].msg_hdr;
    unsigned int len = rx->msgs[i].msg_len;
    uint64_t dest, src;
    zt_rx_frag *f;
    if (h->msg_flags & MSG_TRUNC) {
        zt_rx_drop(rx, &rx->stats.truncated, 1, len);
        return;
    }
    if (len == BEACON_LENGTH) {
        zt_rx_emit_gated(o, i, now);
        return;
    }
    if (len <= FRAG_HEADER) {
        zt_rx_drop(rx, &rx->stats.too_short, 1, len);
        return;
    }
    dest = zt_be40(d + IDX_DEST);
    if (d[IDX_SOURCE] == FRAG_INDICATOR) {
        int total = d[14] >> 4, no = d[14] & 0x0f;
        if (dest != rx->self) {
            zt_rx_emit_relay(o, i, dest, now);
        } else if (no < 1 || no >= total) {
            zt_rx_drop(rx, &rx->stats.bad_fragment, 1, len);
        } else {
            f = zt_rx_frag_piece(rx, &rx->names[i], h->msg_namelen, zt_be64(d), d, len, no, total,
                                 0, now);
            if (f != NULL) {
                zt_rx_emit_whole(o, i, f, now);
                zt_rx_frag_release(rx, f);
            }
        }
        return;
    }
    if (len < IDX_PAYLOAD) {
        zt_rx_drop(rx, &rx->stats.too_short, 1, len);
        return;
    }
    src = zt_be40(d + IDX_SOURCE);
    if (dest != rx->self) {
        zt_rx_emit_relay(o, i, dest, now);
    } else if (src == rx->self) {
        zt_rx_drop(rx, &rx->stats.from_self, 1, len);
    } else if (d[IDX_FLAGS] & FLAG_FRAGMENTED) {
        int known = ((d[IDX_FLAGS] & FLAGS_CIPHER_MASK) >> 3) == CIPHER_TRUSTED_PATH
                        ? zt_rx_tpath_ok(rx, &rx->names[i], zt_be64(d + IDX_MAC))
                        : zt_rx_peer_for(rx, src) != NULL;
        f = zt_rx_frag_piece(rx, &rx->names[i], h->msg_namelen, zt_be64(d), d, len, 0, 0,
                             known, now);
        if (f != NULL) {
            zt_rx_emit_whole(o, i, f, now);
            zt_rx_frag_release(rx, f);
        }
    } else if (len > ZT_ACCEL_MAX_PACKET) {
        zt_rx_drop(rx, &rx->stats.too_long, 1, len);
    } else {
        zt_rx_emit_whole(o, i, NULL, now);
    }
}

/* One burst: read up to max_dgrams datagrams (never blocking) and describe them in recs, in
 * arrival order (a fragmented packet where its last piece arrived). Returns the number of
 * records (0 also when everything read was refused or held: compare stats.datagrams), or
 * -errno from recvmmsg, or ZT_RX_EARGS when the arena or record array is too small. */
int zt_rx_burst(zt_rx *rx, int fd, unsigned char *arena, size_t arena_len, zt_rx_rec *recs,
                int max_recs, uint64_t *ids, int max_dgrams, int gro, uint64_t now_ms)
{
    zt_rx_out o;
    int n, i;
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
    o.rx = rx;
    o.arena = arena;
    o.pos = 0;
    o.recs = recs;
    o.nrec = 0;
    o.ids = ids;
    o.nids = 0;
    o.gro = gro && rx->nnets > 0;
    o.flow.valid = 0;
    for (i = 0; i < n; i++)
        zt_rx_one(&o, i, now_ms);
    zt_rx_close_flow(&o);
    return o.nrec;
}

#else /* not Linux: no recvmmsg; the caller keeps its per-datagram path */

int zt_rx_burst(zt_rx *rx, int fd, unsigned char *arena, size_t arena_len, zt_rx_rec *recs,
                int max_recs, uint64_t *ids, int max_dgrams, int gro, uint64_t now_ms)
{
    (void)rx; (void)fd; (void)arena; (void)arena_len; (void)recs; (void)max_recs;
    (void)ids; (void)max_dgrams; (void)gro; (void)now_ms;
    return ZT_RX_EUNSUPPORTED;
}

#endif
