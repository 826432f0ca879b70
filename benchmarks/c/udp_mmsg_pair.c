/* Plain batched datagrams from C, for bench_udp_batch.py: a receiver and a sender with
 * sendmmsg/recvmmsg, 64 messages per call and no GSO/GRO -- what socketkit's
 * send_many/receive_many do, with no interpreter at all: what batching alone gives on this
 * kernel. Measured as both sides of that benchmark are: datagrams received per second of
 * sending.
 *
 *   udp_mmsg_pair receive WINDOW
 *       prints its port, then "count seconds cpu" once nothing arrived for 0.5 s
 *   udp_mmsg_pair send WINDOW PORT LENGTH SECONDS
 *       prints "sent seconds cpu"
 *
 * WINDOW > 0 sets SO_SNDBUF and SO_RCVBUF as iperf3 -w does; 0 keeps the kernel defaults.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 2048

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

static char buffers[BATCH][SLOT];

int main(int argc, char **argv) {
    if (argc < 3 || (argv[1][0] == 's' && argc < 6)) {
        fprintf(stderr, "usage: %s receive WINDOW | send WINDOW PORT LENGTH SECONDS\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0), window = atoi(argv[2]);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    if (window > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &window, sizeof window);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, sizeof window);
    }
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buffers[i];
        iov[i].iov_len = SLOT;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    if (argv[1][0] == 'r') {
        socklen_t len = sizeof addr;
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
            getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
            perror("bind");
            return 1;
        }
        printf("%d\n", ntohs(addr.sin_port));
        fflush(stdout);
        long count = 0;
        double first = 0, last = 0, cpu0 = 0;
        struct pollfd p = {fd, POLLIN, 0};
        for (;;) {
            int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (n < 0) {
                if (poll(&p, 1, count ? 500 : 30000) == 0)
                    break;
                continue;
            }
            if (!count) {
                first = now();
                cpu0 = cpu();
            }
            count += n;
            last = now();
        }
        printf("%ld %f %f\n", count, last - first, cpu() - cpu0);
        return 0;
    }
    int length = atoi(argv[4]);
    double seconds = atof(argv[5]);
    if (length < 0 || length > SLOT) {
        fprintf(stderr, "LENGTH must be 0..%d\n", SLOT);
        return 2;
    }
    addr.sin_port = htons((unsigned short)atoi(argv[3]));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("connect");
        return 1;
    }
    for (int i = 0; i < BATCH; i++)
        iov[i].iov_len = (size_t)length;
    long sent = 0;
    double cpu0 = cpu(), start = now(), end = start + seconds;
    while (now() < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0)
            sent += n;
        else
            usleep(500); /* ENOBUFS: the queue is full for a moment */
    }
    printf("%ld %f %f\n", sent, now() - start, cpu() - cpu0);
    return 0;
}
