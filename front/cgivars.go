package front

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/fcgivisor/fcgivisor/fastcgi"
)

// request describes one request as the CGI/FastCGI program sees it.
type request struct {
	r              *http.Request
	scriptName     string
	scriptFilename string // "" = documentRoot + scriptName
	pathInfo       string
	documentRoot   string
	contentLength  int64
	serverSoftware string
}

// metaVars builds the RFC 3875 meta-variables for a request, the one
// function both the FastCGI client (as PARAMS) and the CGI spawner (as the
// environment) use.
//
// Choices: CONTENT_LENGTH is always sent ("0" without a body: php-fpm and
// libfcgi read stdin up to it); REDIRECT_STATUS=200 as nginx's fastcgi.conf
// (php-cgi's force_redirect); a client on a Unix listener has REMOTE_ADDR
// "unix:" as in nginx; request headers become HTTP_* except Proxy
// (httpoxy) and except names with "_" (nginx's underscores_in_headers off:
// "X_Foo" would otherwise shadow "X-Foo" as HTTP_X_FOO).
//
// PATH_TRANSLATED (document_root + PATH_INFO, RFC 3875 4.1.6, a SHOULD) is
// never sent, as nginx's fastcgi.conf and fcgiwrap behind it do not:
// php-cgi and PHP-FPM with cgi.fix_pathinfo=0 run the file PATH_TRANSLATED
// names instead of SCRIPT_FILENAME, as a pool worker and as a #! script on
// a cgi route alike, so /index.php/foo would run /foo (404 "No input file
// specified.") and /index.php/upload.txt would run upload.txt as PHP.
//
// The variables are appended to vars (pass a reused slice's [:0]).
func metaVars(vars []fastcgi.Param, q *request) []fastcgi.Param {
	r := q.r
	add := func(k, v string) { vars = append(vars, fastcgi.Param{Name: k, Value: v}) }

	add("GATEWAY_INTERFACE", "CGI/1.1")
	add("SERVER_SOFTWARE", q.serverSoftware)
	add("SERVER_PROTOCOL", r.Proto)
	add("REQUEST_METHOD", r.Method)
	add("REQUEST_URI", r.RequestURI)
	add("DOCUMENT_URI", r.URL.Path)
	add("QUERY_STRING", r.URL.RawQuery)
	add("SCRIPT_NAME", q.scriptName)
	if q.scriptFilename != "" {
		add("SCRIPT_FILENAME", q.scriptFilename)
	} else {
		add("SCRIPT_FILENAME", q.documentRoot+q.scriptName)
	}
	add("DOCUMENT_ROOT", q.documentRoot)
	add("PATH_INFO", q.pathInfo)
	add("CONTENT_LENGTH", strconv.FormatInt(q.contentLength, 10))
	add("CONTENT_TYPE", r.Header.Get("Content-Type"))
	add("REDIRECT_STATUS", "200")

	remoteAddr, remotePort := splitAddr(r.RemoteAddr)
	add("REMOTE_ADDR", remoteAddr)
	add("REMOTE_HOST", remoteAddr)
	add("REMOTE_PORT", remotePort)

	serverName := r.Host
	if strings.IndexByte(serverName, ':') >= 0 { // most Host headers have no port: no error to build
		if h, _, err := net.SplitHostPort(serverName); err == nil {
			serverName = h
		}
	}
	add("SERVER_NAME", serverName)
	if sa, ok := r.Context().Value(serverAddrKey{}).(*serverAddr); ok {
		add("SERVER_ADDR", sa.addr)
		add("SERVER_PORT", sa.port)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
		add("HTTPS", "on")
	}
	add("REQUEST_SCHEME", scheme)
	if user, _, ok := r.BasicAuth(); ok {
		add("AUTH_TYPE", "Basic")
		add("REMOTE_USER", user)
	}

	for name, values := range r.Header {
		if name == "Proxy" || name == "Content-Type" || name == "Content-Length" || strings.IndexByte(name, '_') >= 0 {
			continue
		}
		sep := ", "
		if name == "Cookie" {
			sep = "; "
		}
		add(headerVar(name), strings.Join(values, sep))
	}
	if r.Host != "" {
		if _, ok := r.Header["Host"]; !ok {
			add("HTTP_HOST", r.Host)
		}
	}
	return vars
}

// headerVar turns a header name into its HTTP_* variable name: from a
// table for the headers browsers and proxies send most (no allocation),
// else built.
func headerVar(name string) string {
	if v, ok := headerVars[name]; ok {
		return v
	}
	return buildHeaderVar(name)
}

func buildHeaderVar(name string) string {
	b := make([]byte, 0, 5+len(name))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

var headerVars = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language",
		"Connection", "Cookie", "Referer", "Cache-Control", "Pragma", "Origin",
		"Upgrade-Insecure-Requests", "If-Modified-Since", "If-None-Match",
		"Authorization", "Dnt", "Te", "Priority", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip", "X-Requested-With",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
	} {
		m[k] = buildHeaderVar(k)
	}
	return m
}()

// splitAddr splits "host:port"; a Unix peer is "unix:" with no port.
func splitAddr(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "unix:", ""
	}
	return h, p
}

// serverAddr is a connection's SERVER_ADDR and SERVER_PORT, found once
// per connection (connContext) rather than per request.
type serverAddr struct{ addr, port string }

type serverAddrKey struct{}

// connContext is the server's ConnContext hook: the connection's local
// address, split once.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return withServerAddr(ctx, c.LocalAddr())
}

// withServerAddr is ctx carrying local, split, as metaVars reads it.
func withServerAddr(ctx context.Context, local net.Addr) context.Context {
	a, port := splitAddr(local.String())
	return context.WithValue(ctx, serverAddrKey{}, &serverAddr{a, port})
}
