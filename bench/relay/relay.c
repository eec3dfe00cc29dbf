/* relay.c: the least a FastCGI hop can do, for bench/public.sh stack G.
 *
 *   relay LISTEN UPSTREAM
 *
 * One thread, one epoll set. Each connection accepted on the Unix socket
 * LISTEN gets a connection of its own to the Unix socket UPSTREAM, and
 * bytes are copied both ways as they arrive: no record parsing, no
 * accounting, no worker choice. When either side closes, both are closed.
 * It measures what a second socket pair costs per request, which any
 * process between a web server and its workers pays. Not for production:
 * no limits, and a slow peer blocks it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXFD 65536

static int peer[MAXFD];

static int writeall(int fd, const char *b, ssize_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = {fd, POLLOUT, 0};
				poll(&p, 1, -1);
				continue;
			}
			return -1;
		}
		b += w;
		n -= w;
	}
	return 0;
}

static void watch(int ep, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void accept_all(int ep, int l, const struct sockaddr_un *ua)
{
	int c;
	while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c >= MAXFD || u < 0 || u >= MAXFD || connect(u, (const void *)ua, sizeof *ua) < 0) {
			perror("relay: upstream");
			close(c);
			if (u >= 0)
				close(u);
			continue;
		}
		fcntl(u, F_SETFL, fcntl(u, F_GETFL) | O_NONBLOCK);
		peer[c] = u;
		peer[u] = c;
		watch(ep, c);
		watch(ep, u);
	}
}

int main(int argc, char **argv)
{
	static char buf[65536];
	struct sockaddr_un la = {.sun_family = AF_UNIX}, ua = {.sun_family = AF_UNIX};
	struct epoll_event evs[64];

	if (argc != 3 || strlen(argv[1]) >= sizeof la.sun_path || strlen(argv[2]) >= sizeof ua.sun_path) {
		fprintf(stderr, "usage: relay LISTEN UPSTREAM (Unix socket paths)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	strcpy(la.sun_path, argv[1]);
	strcpy(ua.sun_path, argv[2]);
	unlink(argv[1]);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (void *)&la, sizeof la) < 0 || listen(l, 1024) < 0) {
		perror("relay: listen");
		return 1;
	}
	chmod(argv[1], 0666);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	watch(ep, l);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == l) {
				accept_all(ep, l, &ua);
				continue;
			}
			if (peer[fd] <= 0)
				continue; /* closed earlier in this batch */
			ssize_t r = read(fd, buf, sizeof buf);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0 || writeall(peer[fd], buf, r) < 0) {
				int p = peer[fd];
				close(fd);
				close(p);
				peer[fd] = peer[p] = 0;
			}
		}
	}
}
