/*
 * cc-bench's sender and sink in C, so that the load outruns every target it measures
 * (a Python sender tops out near the speed of libzmq's own proxy on a small machine,
 * and would make the bar look lower than it is).
 *
 *   benchload send URL COUNT TYPE < body      DEALER: COUNT messages ["", TYPE, body, ""]
 *   benchload sink COUNT IDLE_MS              ROUTER: prints its port, then a JSON result
 *   benchload fleet URL FILE IDLE_MS          a DEALER per simulated host, each with its own
 *                                             identity, sending FILE's schedule (see do_fleet)
 *   benchload route PREFIX=URL ...            ROUTER: prints its port; forwards each message by
 *                                             its type's dotted prefix to a DEALER connected to
 *                                             URL and relays the replies back (see do_route)
 *
 * cc-bench compiles this on first use against the libzmq that pyzmq loads.  No zmq.h is
 * needed: the few functions and constants used have kept their ABI since libzmq 3.2.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <unistd.h>

void *zmq_ctx_new(void);
int zmq_ctx_set(void *ctx, int option, int optval);
int zmq_ctx_term(void *ctx);
void *zmq_socket(void *ctx, int type);
int zmq_close(void *sock);
int zmq_setsockopt(void *sock, int option, const void *value, size_t len);
int zmq_getsockopt(void *sock, int option, void *value, size_t *len);
int zmq_bind(void *sock, const char *endpoint);
int zmq_connect(void *sock, const char *endpoint);
int zmq_send(void *sock, const void *buf, size_t len, int flags);
int zmq_recv(void *sock, void *buf, size_t len, int flags);
const char *zmq_strerror(int errnum);
typedef struct {
    void *socket;
    int fd;
    short events;
    short revents;
} zmq_pollitem_t;
int zmq_poll(zmq_pollitem_t *items, int nitems, long timeout);
typedef struct {
    unsigned char _[64];
} __attribute__((aligned(sizeof(void *)))) zmq_msg_t;
int zmq_msg_init(zmq_msg_t *msg);
int zmq_msg_recv(zmq_msg_t *msg, void *sock, int flags);
int zmq_msg_send(zmq_msg_t *msg, void *sock, int flags);
int zmq_msg_close(zmq_msg_t *msg);
void *zmq_msg_data(zmq_msg_t *msg);
size_t zmq_msg_size(const zmq_msg_t *msg);
int zmq_msg_more(const zmq_msg_t *msg);

enum { ZMQ_DEALER = 5, ZMQ_ROUTER = 6 };
enum { ZMQ_DONTWAIT = 1, ZMQ_SNDMORE = 2, ZMQ_POLLIN = 1 };
enum { ZMQ_LINGER = 17, ZMQ_RCVMORE = 13, ZMQ_SNDHWM = 23, ZMQ_RCVHWM = 24 };
enum { ZMQ_ROUTING_ID = 5, ZMQ_FD = 14, ZMQ_EVENTS = 15 };
enum { ZMQ_MAX_SOCKETS = 2 };
enum { ZMQ_LAST_ENDPOINT = 32 };

#define MAX_BODY (16 * 1024 * 1024)
#define SENDER_HWM 1000
#define SINK_HWM 100000

static void die(const char *what)
{
    fprintf(stderr, "benchload: %s: %s\n", what, zmq_strerror(errno));
    exit(2);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int do_send(const char *url, long count, const char *type)
{
    char *body = malloc(MAX_BODY);
    size_t blen = body ? fread(body, 1, MAX_BODY, stdin) : 0;
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = SENDER_HWM, linger = -1;
    size_t tlen = strlen(type);

    if (!body || !sock)
        die("setup");
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_connect(sock, url) != 0)
        die(url);
    usleep(300000); /* connected before the sink's clock starts */
    for (long i = 0; i < count; i++) {
        if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, type, tlen, ZMQ_SNDMORE) < 0
            || zmq_send(sock, body, blen, ZMQ_SNDMORE) < 0 || zmq_send(sock, "", 0, 0) < 0)
            die("send");
    }
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    free(body);
    return 0;
}

static int do_sink(long expected, long idle_ms)
{
    static char buf[65536];
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int hwm = SINK_HWM, more = 0;
    char endpoint[256];
    size_t len = sizeof endpoint;
    long received = 0;
    double nbytes = 0, first = 0, last = 0;

    if (!sock)
        die("setup");
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind(sock, "tcp://127.0.0.1:*") != 0)
        die("bind");
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, endpoint, &len);
    printf("%s\n", strrchr(endpoint, ':') + 1);
    fflush(stdout);
    while (received < expected) {
        int n = zmq_recv(sock, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0) {
            zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
            if (errno != EAGAIN)
                die("recv");
            if (zmq_poll(&item, 1, idle_ms) <= 0)
                break; /* idle: the rest is lost */
            continue;
        }
        nbytes += n;
        for (;;) {
            len = sizeof more;
            zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len);
            if (!more)
                break;
            n = zmq_recv(sock, buf, sizeof buf, 0);
            if (n < 0)
                die("recv");
            nbytes += n;
        }
        last = now();
        if (++received == 1)
            first = last;
    }
    double span = last - first;
    printf("{\"received\": %ld, \"rate\": %.1f, \"mbps\": %.3f}\n", received,
           received > 1 && span > 0 ? (received - 1) / span : 0.0,
           span > 0 ? nbytes / span / 1e6 : 0.0);
    fflush(stdout);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}

/*
 * The fleet: FILE (written by cctools/bench/scenarios/fleet.py) holds, little-endian,
 *   "CCFL" u32 hosts, u32 blobs, u32 messages,
 *   per blob: u32 length, bytes,
 *   per message, in send order: u32 host, u32 at_us, u8 kind, u8 acked, u16 type length,
 *     u32 body length, u32 signature length, u32 blob (0xffffffff: none), type, body, signature.
 * Each message goes out at its at_us (from the start) as [qid, "", type, body, signature, blob?]
 * on its host's DEALER; qid (16 bytes: first send time in ns, message index, host) comes back
 * first in a reply, which gives the delivery latency of the kinds that are acknowledged.  A host
 * whose queue is full drops the message (counted), as a local cc at its zmq_hwm would.
 *
 * A pub.logtail fragment the writer refuses with code busy or gap is sent again, as logtail
 * does: every ~100 ms the refused fragments go out again in schedule order (a host's in file
 * order), so the one refused busy comes before those refused as gaps behind it.  A resent
 * fragment keeps its first send time: its latency counts the wait.
 */
#define KINDS 8
#define FLEET_HWM 1000

struct fmsg {
    uint32_t host, at_us, blob;
    uint8_t kind, acked, tail, refused;
    uint64_t first_ns;
    const char *type, *body, *sig;
    uint32_t tlen, blen, slen;
};

struct fleet {
    void **socks;
    uint32_t nhosts;
    double *lat_ms;     /* per acknowledgement: latency */
    double *lat_at;     /* per acknowledgement: when its message was due (s from start) */
    long nlat, acks, errors;
    long busy, gaps;    /* pub.logtail refusals, each sent again */
    long to_resend;     /* messages flagged refused and not sent again yet */
    struct fmsg *msgs;
    uint32_t nmsgs;
    char first_error[512];
};

static uint32_t rd32(const unsigned char **p)
{
    uint32_t v = (*p)[0] | (*p)[1] << 8 | (*p)[2] << 16 | (uint32_t)(*p)[3] << 24;
    *p += 4;
    return v;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static void fleet_drain(struct fleet *f, uint32_t h, uint64_t start)
{
    static char buf[65536];
    for (;;) {
        int events = 0;
        size_t len = sizeof events;
        zmq_getsockopt(f->socks[h], ZMQ_EVENTS, &events, &len);
        if (!(events & ZMQ_POLLIN))
            return;
        unsigned char qid[16];
        int n = zmq_recv(f->socks[h], qid, sizeof qid, ZMQ_DONTWAIT), more = 0, frame = 0;
        if (n < 0)
            return;
        uint64_t sent;
        uint32_t index;
        memcpy(&sent, qid, 8);
        memcpy(&index, qid + 8, 4);
        int is_error = 0, code = 0; /* 1 busy, 2 gap */
        char error[512] = "";
        for (;;) {
            len = sizeof more;
            zmq_getsockopt(f->socks[h], ZMQ_RCVMORE, &more, &len);
            if (!more)
                break;
            n = zmq_recv(f->socks[h], buf, sizeof buf - 1, 0);
            frame++;
            if (n >= 0 && frame == 2 && n == 5 && memcmp(buf, "error", 5) == 0)
                is_error = 1;
            if (n >= 0 && frame == 3 && is_error) {
                buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = 0;
                code = strstr(buf, "\"code\": \"busy\"") ? 1
                       : strstr(buf, "\"code\": \"gap\"") ? 2 : 0;
            }
            if (n >= 0 && frame == 3 && is_error) {
                size_t keep = (size_t)n < sizeof error - 1 ? (size_t)n : sizeof error - 1;
                memcpy(error, buf, keep);
                error[keep] = 0;
            }
        }
        struct fmsg *m = index < f->nmsgs ? &f->msgs[index] : NULL;
        if (is_error && code && m && m->tail && !m->refused) {
            code == 1 ? f->busy++ : f->gaps++;
            m->refused = 1;
            f->to_resend++;
        } else if (is_error) {
            f->errors++;
            if (!f->first_error[0])
                memcpy(f->first_error, error, sizeof error);
        } else {
            f->acks++;
            f->lat_ms[f->nlat] = (now_ns() - sent) / 1e6;
            f->lat_at[f->nlat++] = (sent - start) / 1e9;
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return v[(long)(q * (n - 1))];
}

/* p99 of the acknowledgements whose messages were due in [from, to) seconds */
static double p99_between(struct fleet *f, double from, double to)
{
    double *v = malloc((f->nlat + 1) * sizeof *v);
    long n = 0;
    for (long i = 0; i < f->nlat; i++)
        if (f->lat_at[i] >= from && f->lat_at[i] < to)
            v[n++] = f->lat_ms[i];
    double r = pct(v, n, 0.99);
    free(v);
    return r;
}

/* send msgs[i] on its host's DEALER; 0 if the host's queue is full */
static int fleet_send(struct fleet *f, uint32_t i, const char **blobs, const uint32_t *blob_len)
{
    struct fmsg *m = &f->msgs[i];
    void *s = f->socks[m->host];
    unsigned char qid[16];
    if (!m->first_ns)
        m->first_ns = now_ns();
    uint32_t ih[2] = { i, m->host };
    memcpy(qid, &m->first_ns, 8);
    memcpy(qid + 8, ih, 8);
    int last = m->blob == 0xffffffffu;
    if (zmq_send(s, qid, 16, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return 0;
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, m->type, m->tlen, ZMQ_SNDMORE);
    zmq_send(s, m->body, m->blen, ZMQ_SNDMORE);
    zmq_send(s, m->sig, m->slen, last ? 0 : ZMQ_SNDMORE);
    if (!last)
        zmq_send(s, blobs[m->blob], blob_len[m->blob], 0);
    return 1;
}

/* send the refused fragments again, in schedule order; how many went out */
static long fleet_resend(struct fleet *f, const char **blobs, const uint32_t *blob_len,
                         uint64_t start)
{
    long n = 0;
    for (uint32_t i = 0; i < f->nmsgs && f->to_resend > 0; i++) {
        struct fmsg *m = &f->msgs[i];
        if (!m->refused || !fleet_send(f, i, blobs, blob_len))
            continue; /* a full queue: tried again at the next sweep */
        m->refused = 0;
        f->to_resend--;
        n++;
        fleet_drain(f, m->host, start);
    }
    return n;
}

static int do_fleet(const char *url, const char *path, long idle_ms)
{
    FILE *in = fopen(path, "rb");
    if (!in)
        die(path);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *data = malloc(size);
    if (!data || fread(data, 1, size, in) != (size_t)size || size < 16 || memcmp(data, "CCFL", 4))
        die("schedule file");
    fclose(in);
    const unsigned char *p = data + 4;
    struct fleet f = { 0 };
    f.nhosts = rd32(&p);
    uint32_t nblobs = rd32(&p), nmsgs = rd32(&p);
    const char **blobs = calloc(nblobs + 1, sizeof *blobs);
    uint32_t *blob_len = calloc(nblobs + 1, sizeof *blob_len);
    for (uint32_t i = 0; i < nblobs; i++) {
        blob_len[i] = rd32(&p);
        blobs[i] = (const char *)p;
        p += blob_len[i];
    }
    struct fmsg *msgs = calloc(nmsgs + 1, sizeof *msgs);
    f.msgs = msgs;
    f.nmsgs = nmsgs;
    long acked_sent = 0, resent = 0, sent[KINDS] = { 0 }, full[KINDS] = { 0 };
    for (uint32_t i = 0; i < nmsgs; i++) {
        struct fmsg *m = &msgs[i];
        m->host = rd32(&p);
        m->at_us = rd32(&p);
        m->kind = *p++ % KINDS;
        m->acked = *p++;
        m->tlen = p[0] | p[1] << 8;
        p += 2;
        m->blen = rd32(&p);
        m->slen = rd32(&p);
        m->blob = rd32(&p);
        m->type = (const char *)p;
        m->body = m->type + m->tlen;
        m->sig = m->body + m->blen;
        p = (const unsigned char *)m->sig + m->slen;
        m->tail = m->tlen == 11 && memcmp(m->type, "pub.logtail", 11) == 0;
    }
    f.lat_ms = malloc((nmsgs + 1) * sizeof(double));
    f.lat_at = malloc((nmsgs + 1) * sizeof(double));
    void *ctx = zmq_ctx_new();
    int ep = epoll_create1(0);
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, f.nhosts + 16);
    f.socks = calloc(f.nhosts, sizeof *f.socks);
    for (uint32_t h = 0; h < f.nhosts; h++) {
        char id[32];
        int hwm = FLEET_HWM, linger = 0, fd;
        size_t len = sizeof fd;
        snprintf(id, sizeof id, "fleet-host-%u", h);
        f.socks[h] = zmq_socket(ctx, ZMQ_DEALER);
        if (!f.socks[h])
            die("socket");
        zmq_setsockopt(f.socks[h], ZMQ_ROUTING_ID, id, strlen(id));
        zmq_setsockopt(f.socks[h], ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(f.socks[h], ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(f.socks[h], url) != 0)
            die(url);
        zmq_getsockopt(f.socks[h], ZMQ_FD, &fd, &len);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = h };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll");
    }
    usleep(1000000 + f.nhosts * 200); /* every host connected before the clock starts */
    printf("start\n");
    fflush(stdout);
    uint64_t start = now_ns(), last_sweep = start;
    double max_lag = 0;
    struct epoll_event events[256];
    for (uint32_t i = 0; i < nmsgs;) {
        uint64_t now = now_ns();
        while (i < nmsgs && (uint64_t)msgs[i].at_us * 1000 <= now - start) {
            struct fmsg *m = &msgs[i];
            if (!fleet_send(&f, i++, blobs, blob_len)) {
                full[m->kind]++;
                continue;
            }
            sent[m->kind]++;
            acked_sent += m->acked;
            double lag = (now - start) / 1e6 - m->at_us / 1e3;
            if (lag > max_lag)
                max_lag = lag;
            fleet_drain(&f, m->host, start); /* a send can swallow the FD's edge */
        }
        int wait = i < nmsgs ? (int)(((uint64_t)msgs[i].at_us * 1000 - (now_ns() - start)) / 1000000) : 0;
        int n = epoll_wait(ep, events, 256, wait > 0 ? wait : 0);
        for (int k = 0; k < n; k++)
            fleet_drain(&f, events[k].data.u32, start);
        if (now_ns() - last_sweep > 100000000u) {
            for (uint32_t h = 0; h < f.nhosts; h++)
                fleet_drain(&f, h, start);
            long n = fleet_resend(&f, blobs, blob_len, start);
            resent += n;
            acked_sent += n;
            last_sweep = now_ns();
        }
    }
    double send_seconds = (now_ns() - start) / 1e9;
    printf("sent\n");
    fflush(stdout);
    uint64_t last_progress = now_ns();
    /* every send (first or again) is answered once: an ack, an error or a refusal */
#define ANSWERED (f.acks + f.errors + f.busy + f.gaps)
    while ((ANSWERED < acked_sent || f.to_resend > 0)
           && (now_ns() - last_progress) / 1000000 < (uint64_t)idle_ms) {
        long before = f.acks + f.errors; /* a refusal is no progress: it may come for ever */
        int n = epoll_wait(ep, events, 256, 100);
        for (int k = 0; k < n; k++)
            fleet_drain(&f, events[k].data.u32, start);
        for (uint32_t h = 0; h < f.nhosts; h++)
            fleet_drain(&f, h, start);
        if (now_ns() - last_sweep > 100000000u) {
            long again = fleet_resend(&f, blobs, blob_len, start);
            resent += again;
            acked_sent += again;
            last_sweep = now_ns();
        }
        if (f.acks + f.errors > before)
            last_progress = now_ns();
    }
    double third = send_seconds / 3;
    double p99_first = p99_between(&f, 0, third), p99_last = p99_between(&f, 2 * third, 1e9);
    double p50 = pct(f.lat_ms, f.nlat, 0.5), p99 = pct(f.lat_ms, f.nlat, 0.99);
    printf("{\"sent\": [");
    for (int k = 0; k < KINDS; k++)
        printf("%s%ld", k ? ", " : "", sent[k]);
    printf("], \"host_full\": [");
    for (int k = 0; k < KINDS; k++)
        printf("%s%ld", k ? ", " : "", full[k]);
    printf("], \"acked_sent\": %ld, \"acks\": %ld, \"errors\": %ld, \"tail_busy\": %ld, "
           "\"tail_gap\": %ld, \"tail_resent\": %ld, \"tail_not_resent\": %ld, ",
           acked_sent, f.acks, f.errors, f.busy, f.gaps, resent, f.to_resend);
    printf("\"p50_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"p99_first_ms\": %.3f, \"p99_last_ms\": %.3f, "
           "\"max_lag_ms\": %.1f, \"send_seconds\": %.3f, \"first_error\": \"",
           p50, p99, p99_first, p99_last, max_lag, send_seconds);
    for (const char *c = f.first_error; *c; c++)
        printf(*c == '"' || *c == '\\' ? "\\%c" : (*c < 32 ? " " : "%c"), *c);
    printf("\"}\n");
    fflush(stdout);
    for (uint32_t h = 0; h < f.nhosts; h++)
        zmq_close(f.socks[h]);
    zmq_ctx_term(ctx);
    return 0;
}

/*
 * The bar of a fleet's proxy: what libzmq alone costs in its place.  A ROUTER bound to a
 * free port forwards each message, route id and all, by its type's dotted prefix (the frame
 * after the empty one) to a DEALER per route, and relays what the DEALERs receive back out
 * of the ROUTER; no parsing beyond the type, no counters.  Runs until killed.
 */
#define ROUTE_MAX 16
#define FRAMES_MAX 40

static int prefix_of(const char *prefix, const char *type, size_t tlen)
{
    size_t plen = strlen(prefix);
    return plen <= tlen && memcmp(prefix, type, plen) == 0 && (plen == tlen || type[plen] == '.');
}

/* One message from `from` to `to` (NULL: the DEALER of its type's route); 0 when none waits. */
static int route_one(void *from, void *to, char **prefixes, void **dealers, int nroutes)
{
    zmq_msg_t frames[FRAMES_MAX];
    int n = 0, more = 1, delim = -1;

    while (more) {
        zmq_msg_init(&frames[n]);
        if (zmq_msg_recv(&frames[n], from, n ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&frames[n]);
            if (n == 0 && errno == EAGAIN)
                return 0;
            die("recv");
        }
        more = zmq_msg_more(&frames[n]);
        if (delim < 0 && zmq_msg_size(&frames[n]) == 0)
            delim = n;
        if (++n == FRAMES_MAX && more)
            die("too many frames");
    }
    if (!to && delim >= 0 && delim + 1 < n) {
        const char *type = zmq_msg_data(&frames[delim + 1]);
        size_t tlen = zmq_msg_size(&frames[delim + 1]);
        for (int r = 0; r < nroutes && !to; r++)
            if (prefix_of(prefixes[r], type, tlen))
                to = dealers[r];
    }
    for (int i = 0; i < n; i++) {
        if (!to || zmq_msg_send(&frames[i], to, i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            zmq_msg_close(&frames[i]); /* no route: dropped */
    }
    return 1;
}

__attribute__((noreturn)) static void do_route(int nroutes, char **routes)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *dealers[ROUTE_MAX];
    char *prefixes[ROUTE_MAX];
    zmq_pollitem_t items[ROUTE_MAX + 1];
    int hwm = SINK_HWM;
    char endpoint[256];
    size_t len = sizeof endpoint;

    if (nroutes > ROUTE_MAX || !router)
        die("setup");
    zmq_setsockopt(router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_bind(router, "tcp://127.0.0.1:*") != 0)
        die("bind");
    items[0] = (zmq_pollitem_t){ router, 0, ZMQ_POLLIN, 0 };
    for (int r = 0; r < nroutes; r++) {
        char *eq = strchr(routes[r], '=');
        if (!eq)
            die("route: PREFIX=URL");
        *eq = 0;
        prefixes[r] = routes[r];
        dealers[r] = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(dealers[r], ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(dealers[r], ZMQ_RCVHWM, &hwm, sizeof hwm);
        if (zmq_connect(dealers[r], eq + 1) != 0)
            die(eq + 1);
        items[r + 1] = (zmq_pollitem_t){ dealers[r], 0, ZMQ_POLLIN, 0 };
    }
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
    printf("%s\n", endpoint);
    fflush(stdout);
    for (;;) {
        if (zmq_poll(items, nroutes + 1, -1) < 0)
            die("poll");
        while (route_one(router, NULL, prefixes, dealers, nroutes))
            ;
        for (int r = 0; r < nroutes; r++)
            while (route_one(dealers[r], router, NULL, NULL, 0))
                ;
    }
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "send") == 0)
        return do_send(argv[2], atol(argv[3]), argv[4]);
    if (argc == 4 && strcmp(argv[1], "sink") == 0)
        return do_sink(atol(argv[2]), atol(argv[3]));
    if (argc == 5 && strcmp(argv[1], "fleet") == 0)
        return do_fleet(argv[2], argv[3], atol(argv[4]));
    if (argc >= 3 && strcmp(argv[1], "route") == 0)
        do_route(argc - 2, argv + 2);
    fprintf(stderr, "usage: benchload send URL COUNT TYPE < body | benchload sink COUNT IDLE_MS"
                    " | benchload fleet URL FILE IDLE_MS | benchload route PREFIX=URL ...\n");
    return 2;
}
