/*
 * hello: the plain CGI program (RFC 3875) bench/cgi.sh runs once per
 * request, under fcgivisor's cgi route and under nginx -> fcgiwrap. It
 * prints a header and one line naming the query string, so that the
 * bench can check the server passed the request's meta-variables.
 *
 * Build: cc -O2 -Wall -o hello hello.c   (no libfcgi: one process per request)
 */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
	const char *q = getenv("QUERY_STRING");

	fputs("Content-Type: text/plain\r\n\r\n", stdout);
	printf("hello from cgi: %s\n", q ? q : "");
	return 0;
}
