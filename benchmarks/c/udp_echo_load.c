/* UDP echo load for bench_serve_udp.py: PEERS sockets (one source port each), WINDOW
 * datagrams of SIZE bytes in flight per socket (each echo received sends the next), for
 * SECONDS. Prints "replies elapsed lost cpu_seconds". A socket with no echo for 200 ms counts
 * one datagram lost and sends one again (loopback drops only when a receive queue overflows).
 *
 *   udp_echo_load HOST PORT PEERS SIZE SECONDS [RCVBUF SNDBUF [WINDOW]]
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT PEERS SIZE SECONDS [RCVBUF SNDBUF]\n", argv[0]);
        return 2;
    }
    int peers = atoi(argv[3]), size = atoi(argv[4]);
    double seconds = atof(argv[5]);
    int rcvbuf = argc > 6 ? atoi(argv[6]) : 0, sndbuf = argc > 7 ? atoi(argv[7]) : 0;
    int window = argc > 8 ? atoi(argv[8]) : 1;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    int ep = epoll_create1(0);
    int *fds = calloc(peers, sizeof(int));
    double *sent_at = calloc(peers, sizeof(double));
    char *buf = calloc(1, size > 65536 ? size : 65536);
    memset(buf, 'x', size);
    for (int i = 0; i < peers; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (rcvbuf) setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (sndbuf) setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        if (connect(fds[i], (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    double start = now(), end = start + seconds;
    for (int i = 0; i < peers; i++) {
        for (int w = 0; w < window; w++) send(fds[i], buf, size, 0);
        sent_at[i] = start;
    }
    long replies = 0, lost = 0;
    struct epoll_event events[256];
    double t = start;
    while (t < end) {
        int n = epoll_wait(ep, events, 256, 50);
        t = now();
        for (int k = 0; k < n; k++) {
            int i = events[k].data.u32;
            int got = 0;
            while (recv(fds[i], buf, 65536, 0) > 0) got++;
            replies += got;
            for (int w = 0; w < got; w++) send(fds[i], buf, size, 0);
            if (got) sent_at[i] = t;
        }
        for (int i = 0; i < peers; i++) {
            if (t - sent_at[i] > 0.2) { lost++; send(fds[i], buf, size, 0); sent_at[i] = t; }
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("%ld %.6f %ld %.6f\n", replies, t - start, lost, cpu);
    return 0;
}
