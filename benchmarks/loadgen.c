/*
 * loadgen: an open-loop HTTP/1.1 load generator free of coordinated omission.
 *
 * Request i is due at t0 + i/rate. Its latency counts from that intended time, not from when it
 * was actually written, so a slow server (or a busy connection) shows up as latency instead of
 * silently lowering the offered rate the way closed-loop tools do. Each due request goes out on a
 * free keep-alive connection; when none is free it waits in a FIFO and a new connection is opened
 * (up to --max-conns). The schedule is kept with a timerfd armed a little before the due time and
 * a clock_gettime spin for the last microseconds. Two delays are reported beside the latency: the
 * send lag (when the generator noticed a request was due - its intended time), which is the
 * generator's own lateness and makes a noisy run visible, and the connection wait (actual write -
 * noticed), the time a due request waited for a free connection because the server was slow.
 *
 * Only 127.0.0.1 is ever targeted. The run is bounded: it stops scheduling after --duration and
 * waits at most --drain for outstanding responses.
 *
 * Output: one JSON object on stdout (counts, latency and send-lag percentiles in microseconds);
 * with --raw FILE, the measured (post warm-up) latencies in microseconds, one per line.
 *
 * Build: cc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define MAX_EVENTS 256

enum { C_CONNECTING, C_IDLE, C_BUSY, C_CLOSED };

struct conn {
    int fd;
    int state;
    long req;          /* index of the request in flight, -1 when none */
    size_t len;        /* bytes buffered */
    char buf[BUF_SIZE];
};

struct opts {
    int port;
    const char *host;
    const char *path;
    double rate, duration, warmup, drain;
    int conns, max_conns;
    long spin_ns;
    const char *raw;
    int fifo; /* SCHED_FIFO priority, 0 for the normal scheduler */
};

static struct opts o;
static struct conn *conns;
static int nconns, epfd, tfd;
static char request[1024];
static size_t request_len;

static int64_t *intended, *noticed, *sent, *done; /* per request, ns; done = 0 while outstanding */
static long total, next_req, completed, errors, incomplete, opened, reconnects;
static long *queue; /* FIFO of due requests waiting for a connection */
static long q_head, q_tail;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static int open_conn(int blocking) {
    if (nconns >= o.max_conns) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(o.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (!blocking) fcntl(fd, F_SETFL, O_NONBLOCK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    if (rc < 0 && errno != EINPROGRESS) die("connect to 127.0.0.1");
    if (blocking) fcntl(fd, F_SETFL, O_NONBLOCK);
    struct conn *c = &conns[nconns];
    c->fd = fd;
    c->req = -1;
    c->len = 0;
    c->state = (rc == 0) ? C_IDLE : C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | (rc == 0 ? 0 : EPOLLOUT), .data.u32 = nconns};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    opened++;
    return nconns++;
}

/* Replace a dead connection in the same slot so slot numbers stay stable. */
static void reopen_conn(int i) {
    struct conn *c = &conns[i];
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    int saved = nconns;
    nconns = i;
    open_conn(0);
    nconns = saved;
    opened--;
    reconnects++;
}

static void send_on(int i, long req) {
    struct conn *c = &conns[i];
    int64_t t = now_ns();
    ssize_t n = write(c->fd, request, request_len);
    if (n != (ssize_t)request_len) { /* a tiny request that does not fit: the peer is gone */
        errors++;
        done[req] = t > intended[req] ? t : intended[req] + 1;
        completed++;
        reopen_conn(i);
        return;
    }
    sent[req] = t;
    c->req = req;
    c->state = C_BUSY;
}

static void dispatch_queue(void) {
    for (int i = 0; i < nconns && q_head < q_tail; i++)
        if (conns[i].state == C_IDLE) send_on(i, queue[q_head++]);
}

/* Whether the header value starting at v (ending at CR) contains word, case-insensitively. */
static int header_has(const char *v, const char *word) {
    size_t n = strlen(word);
    for (; *v && *v != '\r'; v++)
        if (strncasecmp(v, word, n) == 0) return 1;
    return 0;
}

/* Parse as many complete responses as the buffer holds; returns -1 when the peer must go. */
static int parse_responses(int i) {
    struct conn *c = &conns[i];
    for (;;) {
        if (c->len == 0) return 0;
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return c->len >= BUF_SIZE ? -1 : 0;
        size_t head = (size_t)(end - c->buf) + 4;
        int status = 0;
        if (c->len < 12 || sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1) return -1;
        long clen = -1;
        int close_after = 0;
        for (char *line = memchr(c->buf, '\n', head); line && line < end; line = memchr(line, '\n', (size_t)(end - line))) {
            line++;
            if (strncasecmp(line, "content-length:", 15) == 0) clen = strtol(line + 15, NULL, 10);
            else if (strncasecmp(line, "connection:", 11) == 0) close_after = header_has(line + 11, "close");
        }
        if (clen < 0) return -1; /* only Content-Length bodies are supported */
        if (c->len < head + (size_t)clen) return c->len >= BUF_SIZE ? -1 : 0;
        if (c->req < 0) return -1; /* a response nobody asked for */
        int64_t t = now_ns();
        done[c->req] = t;
        completed++;
        if (status < 200 || status >= 400) errors++;
        c->req = -1;
        c->state = C_IDLE;
        size_t used = head + (size_t)clen;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        if (close_after) return -1;
    }
}

static void handle_dead(int i) {
    struct conn *c = &conns[i];
    if (c->req >= 0) { /* the request in flight failed; count it, latency up to now */
        done[c->req] = now_ns();
        completed++;
        errors++;
        c->req = -1;
    }
    reopen_conn(i);
}

static void handle_event(struct epoll_event *ev) {
    int i = (int)ev->data.u32;
    struct conn *c = &conns[i];
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev->events & (EPOLLERR | EPOLLHUP))) {
            errno = err;
            die("connect to 127.0.0.1 (non-blocking)");
        }
        struct epoll_event mod = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &mod);
        c->state = C_IDLE;
        return;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            if (parse_responses(i) < 0) { handle_dead(i); return; }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        handle_dead(i); /* EOF or error */
        return;
    }
}

static void poll_events(int timeout_ms) {
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int k = 0; k < n; k++) {
        if (evs[k].data.u32 == UINT32_MAX) { /* the timerfd: just drain it */
            uint64_t ticks;
            while (read(tfd, &ticks, sizeof ticks) > 0) {}
            continue;
        }
        handle_event(&evs[k]);
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double pct(const int64_t *v, long n, double p) {
    if (n <= 0) return 0;
    long k = (long)ceil(p * (double)n / 100.0 - 1e-9); /* 99.9% of 1000 is 999, not 1000 */
    if (k < 1) k = 1;
    if (k > n) k = n;
    return (double)v[k - 1] / 1000.0;
}

static void print_pcts(const char *name, int64_t *v, long n) {
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    printf("\"%s\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}", name,
           pct(v, n, 50), pct(v, n, 90), pct(v, n, 99), pct(v, n, 99.9), pct(v, n, 100));
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P --rate R [--duration S] [--warmup S] [--conns N] [--max-conns N]\n"
            "               [--host H] [--path P] [--spin-us U] [--drain S] [--raw FILE] [--fifo PRIO]\n"
            "Sends GET requests to 127.0.0.1:P on an open-loop schedule of R requests/s.\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    o = (struct opts){.host = "localhost", .path = "/", .duration = 5, .warmup = 1, .drain = 2,
                      .conns = 16, .max_conns = 512, .spin_ns = 30000};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(k, "--port")) o.port = atoi(v);
        else if (!strcmp(k, "--rate")) o.rate = atof(v);
        else if (!strcmp(k, "--duration")) o.duration = atof(v);
        else if (!strcmp(k, "--warmup")) o.warmup = atof(v);
        else if (!strcmp(k, "--drain")) o.drain = atof(v);
        else if (!strcmp(k, "--conns")) o.conns = atoi(v);
        else if (!strcmp(k, "--max-conns")) o.max_conns = atoi(v);
        else if (!strcmp(k, "--host")) o.host = v;
        else if (!strcmp(k, "--path")) o.path = v;
        else if (!strcmp(k, "--spin-us")) o.spin_ns = (long)(atof(v) * 1000);
        else if (!strcmp(k, "--raw")) o.raw = v;
        else if (!strcmp(k, "--fifo")) o.fifo = atoi(v);
        else usage();
        i++;
    }
    if (o.port <= 0 || o.port > 65535 || o.rate <= 0 || o.duration <= 0 || o.warmup < 0 ||
        o.warmup >= o.duration || o.conns < 1 || o.max_conns < o.conns || o.duration * o.rate > 5e7)
        usage();
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* default 50 us slack would blur the schedule */
    int fifo = 0; /* real-time scheduling keeps other programs from delaying the schedule */
    if (o.fifo > 0) {
        struct sched_param sp = {.sched_priority = o.fifo};
        if (sched_setscheduler(0, SCHED_FIFO, &sp) == 0) fifo = o.fifo;
        else fprintf(stderr, "loadgen: SCHED_FIFO not available (%s); normal scheduling\n", strerror(errno));
    }
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pymesh-loadgen\r\n\r\n",
                                   o.path, o.host);
    total = (long)(o.duration * o.rate);
    intended = calloc((size_t)total, sizeof *intended);
    sent = calloc((size_t)total, sizeof *sent);
    noticed = calloc((size_t)total, sizeof *noticed);
    done = calloc((size_t)total, sizeof *done);
    queue = calloc((size_t)total, sizeof *queue);
    conns = calloc((size_t)o.max_conns, sizeof *conns);
    if (!intended || !noticed || !sent || !done || !queue || !conns) die("calloc");
    epfd = epoll_create1(0);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (epfd < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);
    for (int i = 0; i < o.conns; i++) open_conn(1);

    double interval = 1e9 / o.rate;
    int64_t t0 = now_ns() + 1000000; /* start 1 ms from now */
    for (long i = 0; i < total; i++) intended[i] = t0 + (int64_t)((double)i * interval);

    while (next_req < total) {
        int64_t due = intended[next_req], t = now_ns();
        if (t >= due) {
            /* Every request due by now joins the queue; free connections take from its head. */
            while (next_req < total && intended[next_req] <= t) {
                noticed[next_req] = t;
                queue[q_tail++] = next_req++;
            }
            dispatch_queue();
            long waiting = q_tail - q_head, connecting = 0;
            for (int i = 0; i < nconns; i++) connecting += conns[i].state == C_CONNECTING;
            while (waiting > connecting && open_conn(0) >= 0) connecting++;
            poll_events(0);
            dispatch_queue();
            continue;
        }
        if (due - t > o.spin_ns) { /* sleep until shortly before the due time */
            int64_t wake = due - o.spin_ns;
            struct itimerspec its = {.it_value = {wake / 1000000000LL, wake % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            poll_events(-1);
        } else {
            poll_events(0); /* spin: keep reading responses while waiting */
        }
        dispatch_queue();
    }
    int64_t drain_end = now_ns() + (int64_t)(o.drain * 1e9);
    while (completed < total && now_ns() < drain_end) {
        poll_events(10);
        dispatch_queue();
    }
    int64_t t_end = now_ns();

    long first = (long)(o.warmup * o.rate), measured = 0;
    int64_t *lat = calloc((size_t)total, sizeof *lat), *lag = calloc((size_t)total, sizeof *lag);
    int64_t *wait = calloc((size_t)total, sizeof *wait);
    long nlag = 0, nwait = 0;
    for (long i = 0; i < total; i++) {
        if (done[i] == 0) { incomplete++; done[i] = t_end; } /* lower bound, still counted */
        if (i < first) continue;
        lat[measured++] = done[i] - intended[i];
        if (noticed[i]) lag[nlag++] = noticed[i] - intended[i];
        if (sent[i]) wait[nwait++] = sent[i] - noticed[i];
    }
    if (o.raw) {
        FILE *f = fopen(o.raw, "w");
        if (!f) die("open --raw file");
        for (long i = 0; i < measured; i++) fprintf(f, "%.3f\n", (double)lat[i] / 1000.0);
        fclose(f);
    }
    double span = (double)(intended[total - 1] - intended[first]) / 1e9 + interval / 1e9;
    printf("{\"rate\": %.1f, \"duration_s\": %.3f, \"warmup_s\": %.3f, \"scheduled\": %ld, \"measured\": %ld, "
           "\"completed\": %ld, \"errors\": %ld, \"incomplete\": %ld, \"connections\": %d, \"reconnects\": %ld, "
           "\"offered_rps\": %.1f, \"fifo\": %d, ",
           o.rate, o.duration, o.warmup, total, measured, completed, errors, incomplete, nconns, reconnects,
           (double)measured / span, fifo);
    print_pcts("latency_us", lat, measured);
    printf(", ");
    print_pcts("send_lag_us", lag, nlag);
    printf(", ");
    print_pcts("conn_wait_us", wait, nwait);
    printf("}\n");
    return 0;
}
