package spawner

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestMayAccess(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's parent is 0700
	os.Chmod(dir, 0o755)
	// Files belong to 1000:2000 when the test runs as root, else to the
	// test's own ids; the credentials below are built from the owner.
	fu, fg := uint32(os.Geteuid()), uint32(os.Getegid())
	if fu == 0 {
		fu, fg = 1000, 2000
	}
	sub := filepath.Join(dir, "sub")
	closed := filepath.Join(dir, "closed")
	for _, d := range []string{sub, closed} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, mode os.FileMode) string {
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // past the umask
		os.Chown(p, int(fu), int(fg))
		return p
	}
	public := write(filepath.Join(sub, "public"), 0o644)
	secret := write(filepath.Join(sub, "secret"), 0o600)
	group := write(filepath.Join(sub, "group"), 0o640)
	script := write(filepath.Join(sub, "script"), 0o750)
	noexec := write(filepath.Join(sub, "noexec"), 0o644)
	inClosed := write(filepath.Join(closed, "file"), 0o644)
	os.Chmod(closed, 0o700)
	os.Chown(closed, int(fu), int(fg))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	owner := &syscall.Credential{Uid: fu, Gid: fu + 7}
	member := &syscall.Credential{Uid: fu + 1, Gid: fu + 1, Groups: []uint32{fu + 1, fg}}
	other := &syscall.Credential{Uid: fu + 2, Gid: fu + 2, Groups: []uint32{fu + 2}}
	root := &syscall.Credential{Uid: 0, Gid: 0}
	for _, c := range []struct {
		path string
		cred *syscall.Credential
		mode uint32
		ok   bool
	}{
		{public, other, ReadOK, true},
		{public, other, WriteOK, false},
		{secret, owner, ReadOK | WriteOK, true},
		{secret, member, ReadOK, false},
		{secret, other, ReadOK, false},
		{group, member, ReadOK, true},
		{group, member, WriteOK, false},
		{group, other, ReadOK, false},
		{script, owner, ExecOK, true},
		{script, member, ExecOK, true},
		{script, other, ExecOK, false},
		{noexec, root, ExecOK, false},
		{noexec, root, ReadOK | WriteOK, true},
		{script, root, ExecOK, true},
		{inClosed, owner, ReadOK, true},
		{inClosed, other, ReadOK, false}, // the directory, not the file, refuses
		{link, other, ReadOK, false},     // judged by the target
		{link, owner, ReadOK, true},
	} {
		err := MayAccess(c.path, c.cred, c.mode)
		if (err == nil) != c.ok {
			t.Errorf("MayAccess(%s, uid %d, %o) = %v, want ok %v", c.path, c.cred.Uid, c.mode, err, c.ok)
		}
		if err != nil && !errors.Is(err, fs.ErrPermission) {
			t.Errorf("MayAccess(%s, uid %d, %o) = %v, want a permission error", c.path, c.cred.Uid, c.mode, err)
		}
	}
	if err := MayAccess(filepath.Join(dir, "missing"), other, ReadOK); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}

	// MayAccessFile judges the file alone, by the FileInfo of an open
	// file: the closed directory above does not count.
	for _, c := range []struct {
		path string
		cred *syscall.Credential
		ok   bool
	}{
		{public, other, true},
		{secret, other, false},
		{secret, owner, true},
		{group, member, true},
		{group, other, false},
		{inClosed, other, true},
		{secret, root, true},
	} {
		f, err := os.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		err = MayAccessFile(c.path, fi, c.cred, ReadOK)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, fs.ErrPermission)) {
			t.Errorf("MayAccessFile(%s, uid %d) = %v, want ok %v", c.path, c.cred.Uid, err, c.ok)
		}
	}
}
