/*
 * selfexit worker (libfcgi): exits by itself as gitweb --fastcgi does, after
 * every error page (QUERY_STRING "fail": a 404) and after every EXIT_EVERY-th
 * response. QUERY_STRING "crash" reads the whole request, then exits without
 * answering: the client sees a plain EOF, never a reset. Each answer is the
 * worker's pid.
 */
#include <fcgiapp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	const char *e = getenv("EXIT_EVERY");
	int every = e ? atoi(e) : 5;
	FCGX_Request r;
	char buf[4096];

	if (every < 1)
		every = 1;
	FCGX_Init();
	FCGX_InitRequest(&r, 0, 0);
	for (int n = 1; FCGX_Accept_r(&r) >= 0; n++) {
		const char *q = FCGX_GetParam("QUERY_STRING", r.envp);
		int fail = q && strcmp(q, "fail") == 0;

		while (FCGX_GetStr(buf, sizeof buf, r.in) > 0)
			;
		if (q && strcmp(q, "crash") == 0)
			_exit(3);
		FCGX_FPrintF(r.out, "Status: %s\r\nContent-Type: text/plain\r\n\r\n%d\n",
			     fail ? "404 Not Found" : "200 OK", (int)getpid());
		FCGX_Finish_r(&r);
		if (fail || n % every == 0)
			exit(0);
	}
	return 0;
}
