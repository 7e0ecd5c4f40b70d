/*
 * cc-bench's sender and sink in C, so that the load outruns every target it measures
 * (a Python sender tops out near the speed of libzmq's own proxy on a small machine,
 * and would make the bar look lower than it is).
 *
 *   benchload send URL COUNT TYPE < body      DEALER: COUNT messages ["", TYPE, body, ""]
 *   benchload sink COUNT IDLE_MS              ROUTER: prints its port, then a JSON result
 *
 * cc-bench compiles this on first use against the libzmq that pyzmq loads.  No zmq.h is
 * needed: the few functions and constants used have kept their ABI since libzmq 3.2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void *zmq_ctx_new(void);
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

enum { ZMQ_DEALER = 5, ZMQ_ROUTER = 6 };
enum { ZMQ_DONTWAIT = 1, ZMQ_SNDMORE = 2, ZMQ_POLLIN = 1 };
enum { ZMQ_LINGER = 17, ZMQ_RCVMORE = 13, ZMQ_SNDHWM = 23, ZMQ_RCVHWM = 24 };
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

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "send") == 0)
        return do_send(argv[2], atol(argv[3]), argv[4]);
    if (argc == 4 && strcmp(argv[1], "sink") == 0)
        return do_sink(atol(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: benchload send URL COUNT TYPE < body | benchload sink COUNT IDLE_MS\n");
    return 2;
}
