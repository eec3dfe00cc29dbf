package spawner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// Access modes for MayAccess, as access(2) takes them.
const (
	ReadOK  = 4
	WriteOK = 2
	ExecOK  = 1
)

// MayAccess reports whether a process with cred could open path for mode
// (ReadOK, WriteOK, ExecOK or'ed), judging by the mode bits as the kernel
// does without ACLs: search permission on each directory of the path
// (symlinks resolved), then mode on the file itself. uid 0 may do
// anything but execute a file that has no execute bit at all. cred nil
// means fcgivisor's own effective ids.
//
// It lets fcgivisor, running as root, refuse what the user it acts for
// could not do: serve a file that user cannot read (static routes), or
// start a command that user cannot execute (check). The error names the
// path that stops it and says why.
func MayAccess(path string, cred *syscall.Credential, mode uint32) error {
	cred = ownCred(cred)
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		if err := allowed(dir, cred, ExecOK); err != nil {
			return err
		}
		if dir == "/" {
			break
		}
	}
	return allowed(real, cred, mode)
}

// ownCred is cred, or fcgivisor's own effective ids when cred is nil.
func ownCred(cred *syscall.Credential) *syscall.Credential {
	if cred != nil {
		return cred
	}
	cred = &syscall.Credential{Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid())}
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			cred.Groups = append(cred.Groups, uint32(g))
		}
	}
	return cred
}

// allowed checks mode on path's own bits for cred.
func allowed(path string, cred *syscall.Credential, mode uint32) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return MayAccessFile(path, fi, cred, mode)
}

// MayAccessFile is MayAccess's judgement of the file itself, without the
// directories above it, by the bits fi gives (e.g. from Stat of a file
// already open, so that no path is looked up again between the judgement
// and the read); path only names the file in the error. cred nil means
// fcgivisor's own effective ids.
func MayAccessFile(path string, fi fs.FileInfo, cred *syscall.Credential, mode uint32) error {
	cred = ownCred(cred)
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &fs.PathError{Op: "stat", Path: path, Err: errors.New("no owner and group known")}
	}
	perm := uint32(fi.Mode().Perm())
	if cred.Uid == 0 {
		if mode&ExecOK == 0 || fi.IsDir() || perm&0o111 != 0 {
			return nil
		}
		return &fs.PathError{Op: "execute", Path: path, Err: fmt.Errorf("%w: no execute bit set", fs.ErrPermission)}
	}
	var bits uint32
	switch {
	case st.Uid == cred.Uid:
		bits = perm >> 6
	case st.Gid == cred.Gid || slices.Contains(cred.Groups, st.Gid):
		bits = (perm >> 3) & 7
	default:
		bits = perm & 7
	}
	if bits&mode == mode {
		return nil
	}
	op := "open"
	if fi.IsDir() {
		op = "search"
	}
	return &fs.PathError{Op: op, Path: path, Err: fmt.Errorf("%w for uid %d (mode %04o, owner %d:%d)", fs.ErrPermission, cred.Uid, perm, st.Uid, st.Gid)}
}
