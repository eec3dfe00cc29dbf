/*
 * c-worker: the C example FastCGI worker (libfcgi). It serves the examples'
 * test protocol (examples/README.md) one request at a time on the listening
 * socket it inherits as fd 0 (FCGI_LISTENSOCK_FILENO), as spawn-fcgi and
 * fcgivisor hand it over.
 *
 * Build: cc -O2 -Wall -o worker worker.c -lfcgi   (Debian: libfcgi-dev)
 */
#include <fcgiapp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (26 * 2520) /* a multiple of 26: every ?size chunk starts with 'a' */

static char chunk[CHUNK];

/* byname orders "NAME=VALUE" strings by NAME only: plain strcmp would put
 * "X1=..." before "X=..." because '1' < '='. */
static int byname(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
	int c = memcmp(x, y, nx < ny ? nx : ny);
	if (c != 0)
		return c;
	return (nx > ny) - (nx < ny);
}

static void print_sorted(FCGX_Stream *out, char **vars, size_t n)
{
	qsort(vars, n, sizeof *vars, byname);
	for (size_t i = 0; i < n; i++)
		FCGX_FPrintF(out, "%s\n", vars[i]);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* unescape decodes %XX and '+' in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			*o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static void text(FCGX_Stream *out)
{
	FCGX_PutS("Content-Type: text/plain\r\n\r\n", out);
}

static void penv(FCGX_Stream *out)
{
	static char buf[1 << 20];
	char *vars[8192];
	size_t len = 0, n = 0;
	ssize_t r;
	int fd = open("/proc/self/environ", O_RDONLY);
	if (fd < 0) {
		FCGX_PutS("Status: 500 Internal Server Error\r\n", out);
		text(out);
		return;
	}
	while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	for (size_t i = 0; i < len && n < 8192; i += strlen(buf + i) + 1)
		if (buf[i] != '\0')
			vars[n++] = buf + i;
	text(out);
	print_sorted(out, vars, n);
}

static void handle(FCGX_Request *req)
{
	FCGX_Stream *out = req->out;
	const char *qs = FCGX_GetParam("QUERY_STRING", req->envp);
	char query[8192];
	char *key, *val;

	/* The first key decides: "size=5&x" is key "size", value "5". */
	snprintf(query, sizeof query, "%s", qs ? qs : "");
	query[strcspn(query, "&")] = '\0';
	key = query;
	val = strchr(query, '=');
	if (val)
		*val++ = '\0';
	else
		val = query + strlen(query); /* writable "", for unescape */
	unescape(val);

	if (strcmp(key, "vars") == 0) {
		size_t n = 0;
		while (req->envp[n])
			n++;
		text(out);
		print_sorted(out, req->envp, n);
	} else if (strcmp(key, "penv") == 0) {
		penv(out);
	} else if (strcmp(key, "echo") == 0) {
		char buf[64 << 10];
		int n;
		FCGX_PutS("Content-Type: application/octet-stream\r\n\r\n", out);
		while ((n = FCGX_GetStr(buf, sizeof buf, req->in)) > 0)
			if (FCGX_PutStr(buf, n, out) < 0)
				break;
	} else if (strcmp(key, "crc32") == 0) {
		/* The whole body is read before the answer starts, so no web server
		 * that sends the body before reading the answer can deadlock. */
		unsigned char buf[64 << 10];
		unsigned long crc = 0xffffffffUL; /* CRC-32 (IEEE), as zlib's crc32() */
		long long len = 0;
		int n;
		while ((n = FCGX_GetStr((char *)buf, sizeof buf, req->in)) > 0) {
			len += n;
			for (int i = 0; i < n; i++) {
				crc ^= buf[i];
				for (int k = 0; k < 8; k++)
					crc = (crc >> 1) ^ (0xedb88320UL & -(crc & 1));
			}
		}
		text(out);
		FCGX_FPrintF(out, "%lld %08lx\n", len, crc ^ 0xffffffffUL);
	} else if (strcmp(key, "size") == 0) {
		long long n = atoll(val);
		text(out);
		while (n > 0) {
			int k = n < CHUNK ? (int)n : CHUNK;
			if (FCGX_PutStr(chunk, k, out) < 0)
				break;
			n -= k;
		}
	} else if (strcmp(key, "status") == 0) {
		int code = atoi(val);
		if (code < 100 || code > 999)
			code = 500;
		FCGX_FPrintF(out, "Status: %d Custom\r\n", code);
		text(out);
		FCGX_FPrintF(out, "status %d\n", code);
	} else if (strcmp(key, "location") == 0) {
		FCGX_FPrintF(out, "Status: 302 Found\r\nLocation: %s\r\n\r\n", val);
	} else if (strcmp(key, "sleep") == 0) {
		int ms = atoi(val);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) != 0)
			;
		text(out);
		FCGX_FPrintF(out, "slept %d\n", ms);
	} else if (strcmp(key, "pid") == 0) {
		text(out);
		FCGX_FPrintF(out, "%d\n", (int)getpid());
	} else if (strcmp(key, "stderr") == 0) {
		FCGX_FPrintF(req->err, "%s\n", val);
		text(out);
		FCGX_PutS("ok\n", out);
	} else if (strcmp(key, "exit") == 0) {
		_exit(3); /* a crash mid-request: no answer, no stream flushing */
	} else {
		text(out);
		FCGX_PutS("hello from c\n", out);
	}
}

int main(void)
{
	FCGX_Request req;

	for (int i = 0; i < CHUNK; i++)
		chunk[i] = (char)('a' + i % 26);
	if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0 /* fd 0 */, 0) != 0) {
		fprintf(stderr, "c worker: libfcgi init failed\n");
		return 1;
	}
	if (FCGX_IsCGI()) {
		fprintf(stderr, "c worker: fd 0 is not a listening socket; run me under fcgivisor or spawn-fcgi\n");
		return 1;
	}
	fprintf(stderr, "c worker %d ready\n", (int)getpid());
	while (FCGX_Accept_r(&req) >= 0) {
		handle(&req);
		FCGX_Finish_r(&req);
	}
	return 0;
}
