/* Echo load generator: N connections, one message of SIZE bytes in flight on each, for SECS
 * seconds (bounded). Prints "<round trips> <seconds>". Cheap enough (C, epoll) that the server,
 * not the client, is the bottleneck up to ~100 k req/s on these machines (measured here).
 * Usage: echo_load HOST PORT CONNS SIZE SECS   (HOST must be loopback: 127.x or ::1) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn { int fd; size_t sent, recvd; };

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: echo_load HOST PORT CONNS SIZE SECS\n"); return 2; }
    const char *host = argv[1]; int port = atoi(argv[2]); int n = atoi(argv[3]);
    size_t size = (size_t)atol(argv[4]); double secs = atof(argv[5]);
    if (strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0) {
        fprintf(stderr, "echo_load: loopback only\n"); return 2;
    }
    if (secs > 120) secs = 120;
    struct sockaddr_storage ss; socklen_t sl; memset(&ss, 0, sizeof ss);
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss; a->sin6_family = AF_INET6;
        a->sin6_port = htons(port); inet_pton(AF_INET6, host, &a->sin6_addr); sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss; a->sin_family = AF_INET;
        a->sin_port = htons(port); inet_pton(AF_INET, host, &a->sin_addr); sl = sizeof *a;
    }
    char *out = malloc(size), *in = malloc(size);
    memset(out, 'x', size);
    struct conn *c = calloc(n, sizeof *c);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c[i].fd = fd;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (write(fd, out, size) != (ssize_t)size) { perror("write"); return 1; }
    }
    long done = 0; double start = now(), end = start + secs;
    struct epoll_event evs[256];
    while (now() < end) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int j = 0; j < k; j++) {
            struct conn *x = &c[evs[j].data.u32];
            ssize_t r = read(x->fd, in, size - x->recvd);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; fprintf(stderr, "peer closed\n"); return 1; }
            x->recvd += (size_t)r;
            if (x->recvd == size) {
                x->recvd = 0; done++;
                if (write(x->fd, out, size) != (ssize_t)size) { perror("write"); return 1; }
            }
        }
    }
    printf("%ld %.6f\n", done, now() - start);
    for (int i = 0; i < n; i++) close(c[i].fd);
    return 0;
}
