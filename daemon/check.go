package daemon

// Check is what `fcgivisor check`, start and reload refuse beyond conf:
// what the file names on this machine (issue 10). conf reads the file
// only; a command that is not installed or a document_root that does not
// exist would otherwise pass check and show up only as workers respawned
// forever (503) or a 404 at every request.

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fcgivisor/fcgivisor/conf"
	"github.com/fcgivisor/fcgivisor/front"
	"github.com/fcgivisor/fcgivisor/spawner"
	"github.com/fcgivisor/fcgivisor/supervisor"
)

// Check checks cfg against this machine as start would use it, running
// as root (privileged) or not: users and groups (CheckPrivileges); each
// pool's dir and command[0], found as a worker start finds it and judged
// by the mode bits as the pool's user (fcgivisor's own when not root);
// the routes' directories and document_root (front.CheckDirs); and
// whether fcgivisor can create or use runtime_dir. It creates nothing.
// getenv is fcgivisor's environment (PATH, inherit_env). A pool that no
// route names and that has no listen is warned about on log. Every error
// is returned, joined, as "FILE: KEY: problem (fix)".
func Check(cfg *conf.Config, privileged bool, getenv func(string) (string, bool), log *slog.Logger) error {
	var errs []error
	if err := CheckPrivileges(cfg, privileged, log); err != nil {
		errs = append(errs, err)
	}
	var found []error
	getenv = hideSystemd(getenv) // as the pools see it
	for _, pc := range cfg.Pools() {
		found = append(found, checkPool(pc, privileged, getenv)...)
		if err := checkListenDir(pc, cfg.Server.RuntimeDir); err != nil {
			found = append(found, err)
		}
	}
	found = append(found, front.CheckDirs(cfg)...)
	if err := checkAccessLog(cfg); err != nil {
		found = append(found, err)
	}
	if err := checkRuntimeDir(cfg.Server.RuntimeDir); err != nil {
		found = append(found, err)
	}
	for _, err := range found {
		errs = append(errs, fmt.Errorf("%s: %w", cfg.File, err))
	}
	warnUnreached(cfg, log)
	return errors.Join(errs...)
}

// checkPool checks that the pool's user can enter its dir and execute its
// command[0]. A #! script's interpreter is not looked at: the kernel
// finds it at exec.
func checkPool(pc *conf.Pool, privileged bool, getenv func(string) (string, bool)) []error {
	key := "pool." + pc.Name
	u := poolUser(pc, privileged)
	var errs []error
	dirOK := true
	if pc.Dir != "" {
		if err := u.reach(pc.Dir, true); err != nil {
			errs = append(errs, fmt.Errorf("%s.dir: %w", key, err))
			dirOK = false
		}
	}
	if argv0 := pc.Command[0]; !dirOK && strings.Contains(argv0, "/") && !filepath.IsAbs(argv0) {
		return errs // taken relative to dir: said already
	}
	exe, err := supervisor.ResolveCommand(pc, getenv)
	if err != nil {
		return append(errs, fmt.Errorf("%s.command: %w", key, notFound(pc, err)))
	}
	if err := u.reach(exe, false); err != nil {
		errs = append(errs, fmt.Errorf("%s.command: %w", key, err))
	}
	return errs
}

// checkListenDir checks that the directory of a pool's Unix listen path
// exists (runtime_dir is created at start), as the socket is bound there.
func checkListenDir(pc *conf.Pool, runtimeDir string) error {
	network, address, err := conf.ParseAddr(pc.Listen)
	if pc.Listen == "" || err != nil || network != "unix" {
		return nil
	}
	dir := filepath.Dir(address)
	if filepath.Clean(dir) == filepath.Clean(runtimeDir) {
		return nil
	}
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("pool.%s.listen: %w (create the directory, or put the socket in runtime_dir %s)", pc.Name, err, runtimeDir)
	case !fi.IsDir():
		return fmt.Errorf("pool.%s.listen: %s is not a directory", pc.Name, dir)
	}
	return nil
}

// notFound explains why command[0] could not be resolved (err) and says
// the fix.
func notFound(pc *conf.Pool, err error) error {
	argv0 := pc.Command[0]
	if !strings.Contains(argv0, "/") {
		return fmt.Errorf("%w (install it, give command[0] as a full path, or set PATH in pool.%s.env)", err, pc.Name)
	}
	path := argv0
	if !filepath.IsAbs(path) && pc.Dir != "" {
		path = filepath.Join(pc.Dir, path)
	}
	fi, serr := os.Stat(path)
	switch {
	case errors.Is(serr, fs.ErrNotExist):
		return fmt.Errorf("%s: no such file (install it, or fix the path)", path)
	case serr != nil:
		return fmt.Errorf("%w (%s, or fix the path)", serr, statFix(serr))
	case fi.IsDir():
		return fmt.Errorf("%s: a directory, not a program (fix the path)", path)
	}
	return fmt.Errorf("%s: not executable (mode %04o) (chmod +x it, or fix the path)", path, fi.Mode().Perm())
}

// statFix is the fix for a stat error other than "no such file".
func statFix(err error) string {
	if errors.Is(err, syscall.ENOTDIR) {
		return "a file stands where its path needs a directory: move it"
	}
	return "let fcgivisor's user search every directory above it"
}

// runAs is who a pool's processes run as, for judging what they can
// reach.
type runAs struct {
	cred  *syscall.Credential // nil: fcgivisor's own ids
	known bool                // false: the user is unset or unknown (CheckPrivileges says so)
	who   string              // `user "www-data"`, or `fcgivisor (uid 1000)`
	other string              // the other fix: change the user, or the path
}

func poolUser(pc *conf.Pool, privileged bool) runAs {
	if !privileged {
		return runAs{known: true, who: fmt.Sprintf("fcgivisor (uid %d)", os.Geteuid()), other: "fix the path"}
	}
	cred, err := spawner.Credential(pc.User, pc.Group)
	return runAs{cred: cred, known: err == nil && pc.User != "", who: fmt.Sprintf("user %q", pc.User),
		other: fmt.Sprintf("set another pool.%s.user", pc.Name)}
}

// reach says why path is not a directory the user can enter (dir) or a
// regular file the user can execute: spawner.MayAccess, each directory
// above it searchable included.
func (u runAs) reach(path string, dir bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && dir:
		return fmt.Errorf("%s: no such directory (create it, or fix the path)", path)
	case err != nil:
		return fmt.Errorf("%w (%s, or fix the path)", err, statFix(err))
	case dir && !fi.IsDir():
		return fmt.Errorf("%s: not a directory (fix the path)", path)
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file (fix the path)", path)
	case !u.known:
		return nil
	}
	if err := spawner.MayAccess(path, u.cred, spawner.ExecOK); err != nil {
		what, fix := "execute it", "make it executable for them and every directory above it searchable"
		if dir {
			what, fix = "enter it", "make it and every directory above it searchable for them"
		}
		return fmt.Errorf("%s: %s cannot %s: %w (%s, or %s)", path, u.who, what, err, fix, u.other)
	}
	return nil
}

// checkRuntimeDir checks that socket.OpenRuntimeDir can create runtime_dir
// (os.MkdirAll: the nearest existing directory above it writable), or
// use it as it is: a directory fcgivisor owns (it makes it mode 0700) and
// may write and search, with a lock file it may open. It judges by
// access(2) as fcgivisor's effective user, which also sees read-only
// file systems.
func checkRuntimeDir(dir string) error {
	const key = "server.runtime_dir"
	const other = "or choose another runtime_dir"
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		for {
			if _, err := os.Stat(parent); !errors.Is(err, fs.ErrNotExist) || parent == "/" {
				break
			}
			parent = filepath.Dir(parent)
		}
		if err := mayWrite(parent); err != nil {
			return fmt.Errorf("%s: %s does not exist and fcgivisor cannot create it: %w (create it for fcgivisor's user, %s)", key, dir, err, other)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w (%s, %s)", key, err, statFix(err), other)
	case !fi.IsDir():
		return fmt.Errorf("%s: %s: not a directory (remove it, %s)", key, dir, other)
	}
	if uid := os.Geteuid(); uid != 0 {
		if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != uint32(uid) {
			return fmt.Errorf("%s: %s is owned by uid %d, and fcgivisor (uid %d) must own it to make it mode 0700 (chown it to uid %d, %s)",
				key, dir, owner, uid, uid, other)
		}
	}
	if err := mayWrite(dir); err != nil {
		return fmt.Errorf("%s: fcgivisor cannot create its sockets: %w (let fcgivisor's user write it, %s)", key, err, other)
	}
	lock := filepath.Join(dir, "fcgivisor.lock")
	if err := unix.Faccessat(unix.AT_FDCWD, lock, unix.R_OK|unix.W_OK, unix.AT_EACCESS); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: fcgivisor cannot open %s: %w (remove it, or chown it to fcgivisor's user)", key, lock, err)
	}
	return nil
}

// mayWrite says why fcgivisor may not create entries in dir.
func mayWrite(dir string) error {
	if fi, err := os.Stat(dir); err != nil {
		return err
	} else if !fi.IsDir() {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
	}
	if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		return &fs.PathError{Op: "write", Path: dir, Err: err}
	}
	return nil
}

// warnUnreached warns about pools that nothing sends requests to: their
// workers would run for nothing.
func warnUnreached(cfg *conf.Config, log *slog.Logger) {
	routed := make(map[string]bool)
	for _, rc := range cfg.HTTP.Routes {
		routed[rc.Pool] = true
	}
	for _, pc := range cfg.Pools() {
		if !routed[pc.Name] && pc.Listen == "" {
			log.Warn(fmt.Sprintf("pool %q is unreachable: no route names it and it has no listen; its workers would serve nothing (add a [[http.route]] with pool = %q, or remove the pool)", pc.Name, pc.Name),
				"key", "pool."+pc.Name)
		}
	}
}
