package supervisor

import (
	"errors"
	"sync"
	"time"

	"github.com/fcgivisor/fcgivisor/spawner"
)

// CGI fallback (cgi_fallback = true): when the pool cannot serve a request
// (it is failing, or no slot freed within queue_timeout) the front runs
// the pool's command once as a CGI program for it. php-cgi and libfcgi's
// FCGI_Accept programs serve one request as CGI when fd 0 is not a socket.
// So that an overloaded pool cannot fork-bomb the machine, at most
// max_workers such runs go on at once; beyond that the request gets 503.

// ErrFallbackBusy: max_workers fallback runs of the pool are going on.
var ErrFallbackBusy = errors.New("cgi_fallback: max_workers CGI runs are going on already")

// errNoFallback: the pool has no cgi_fallback.
var errNoFallback = errors.New("cgi_fallback is off")

// Fallback describes one CGI run of a pool's command.
type Fallback struct {
	// Spec is the command, dir, environment (the pool's; the caller adds
	// the request's meta-variables), credentials and rlimits of the pool.
	// The caller sets the stdio.
	Spec spawner.Spec
	// Timeout is the pool's request_timeout.
	Timeout time.Duration
	// Done must be called once the run is over.
	Done func()
}

// CanFallback reports whether err, returned by Serve, means the pool
// could not serve the request and has cgi_fallback: the caller then runs
// the request through Fallback.
func (p *Pool) CanFallback(err error) bool {
	return p.live().conf().CGIFallback && (errors.Is(err, ErrFailing) || errors.Is(err, ErrQueueTimeout))
}

// Fallback reserves one of the pool's max_workers CGI fallback runs.
// Errors: ErrFallbackBusy (answer 503), or the command cannot be found.
func (p *Pool) Fallback() (*Fallback, error) {
	p = p.live()
	cfg := p.conf()
	if !cfg.CGIFallback {
		return nil, errNoFallback
	}
	p.mu.Lock()
	if p.fallbacks >= cfg.MaxWorkers {
		p.stats.refused.Add(1)
		p.mu.Unlock()
		return nil, ErrFallbackBusy
	}
	p.fallbacks++
	p.mu.Unlock()
	var once sync.Once
	done := func() {
		once.Do(func() {
			p.mu.Lock()
			p.fallbacks--
			p.mu.Unlock()
		})
	}
	spec, err := p.command(cfg)
	if err != nil {
		done()
		return nil, err
	}
	p.stats.fallbacks.Add(1)
	return &Fallback{Spec: spec, Timeout: cfg.RequestTimeout, Done: done}, nil
}

// live is the pool that takes new requests: p, or the generation that
// replaced it on a reload.
func (p *Pool) live() *Pool {
	for {
		next := p.next.Load()
		if next == nil {
			return p
		}
		p = next
	}
}
