// Package fastcgi speaks the FastCGI 1.0 wire protocol as the web server side:
// a client that sends one RESPONDER request at a time on a connection to a
// FastCGI application (php-cgi, libfcgi programs, Go's net/http/fcgi, ...)
// and streams back what the application writes.
//
// # Requests
//
// Conn.Do sends BEGIN_REQUEST and the PARAMS stream, then streams
// Request.Body as STDIN from a goroutine while it reads the answer: a
// responder may write its whole response before it reads its input, so a
// client that first writes all of STDIN and only then reads can deadlock. Do
// returns once the first STDOUT or END_REQUEST record has arrived; the
// Response reads the rest of STDOUT and passes STDERR records to
// Request.Stderr as they come. The client adds no params of its own: the
// caller sends CONTENT_LENGTH and the other CGI meta-variables.
//
// # Errors
//
// Do returns an error (and no Response) only when nothing at all came back
// from the application: the request could not be written, or the connection
// was closed or reset before the first byte of a response. That error wraps
// the transport's error (io.EOF, syscall.ECONNRESET, syscall.EPIPE,
// net.ErrClosed, os.ErrDeadlineExceeded), so a caller can tell that a reused
// keep-alive connection was closed by the application while idle and send
// the request again elsewhere. Nothing received does not prove that nothing
// ran, though: an application that dies while running the request, or a
// deadline, looks the same from here. Only a failed write (EPIPE on a Unix
// socket) shows that the request never reached the application; Conn.Closed
// before reuse catches most idle closes before anything is sent. Once any
// byte has arrived, failures come from Response.Read instead:
//
//   - io.EOF: END_REQUEST with protocolStatus REQUEST_COMPLETE; see
//     Response.AppStatus.
//   - *ProtocolStatusError: END_REQUEST refusing the request (CANT_MPX_CONN,
//     OVERLOADED, UNKNOWN_ROLE).
//   - an error wrapping ErrProtocol: the application sent bytes that are not
//     valid FastCGI (bad version, unknown or misdirected record type, wrong
//     request ID, malformed END_REQUEST, ...).
//   - an error wrapping io.ErrUnexpectedEOF: the connection ended before
//     END_REQUEST.
//   - an error wrapping ErrRequestBody: reading Request.Body failed, so the
//     request was abandoned (this one can also come from Do).
//   - other errors wrap the transport's error.
//
// Any failure leaves the connection unusable; Response.Close then closes it.
//
// # Cancellation
//
// There is no context: set deadlines on Conn.NetConn, or call Conn.Close from
// another goroutine, which makes a blocked Do or Read return an error.
//
// The package logs nothing and has no global state.
package fastcgi
