package spawner

import (
	"fmt"
	"log/slog"
	"os/user"
	"strconv"
	"syscall"
)

// Credential resolves a pool's user and group to the credentials its
// processes run with: the user's uid, the group's gid (the user's primary
// group when group is ""), and the user's supplementary groups, as login
// would set them. group alone keeps fcgivisor's uid. Both empty: nil (run
// as fcgivisor runs).
func Credential(userName, groupName string) (*syscall.Credential, error) {
	if userName == "" && groupName == "" {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: uint32(syscall.Geteuid()), Gid: uint32(syscall.Getegid())}
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", userName, err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(uid), uint32(gid)
		ids, err := u.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("groups of user %q: %w", userName, err)
		}
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", groupName, err)
		}
		gid, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(gid)
	}
	if cred.Groups == nil {
		// Drop fcgivisor's own supplementary groups.
		cred.Groups = []uint32{cred.Gid}
	}
	return cred, nil
}

// CheckCredential checks the user and group that the table key (e.g.
// "pool.php", "http.route[2]") runs its programs (what: "workers", "CGI
// scripts") with, against how fcgivisor runs: as root (privileged) user
// must be set (user = "root" to mean it) and user and group must exist;
// as another user they are ignored with a warning, as PHP-FPM does. The
// error names the offending key.
func CheckCredential(key, what, userName, groupName string, privileged bool, log *slog.Logger) error {
	if !privileged {
		if userName != "" || groupName != "" {
			log.Warn("user and group are ignored: fcgivisor does not run as root", "key", key)
		}
		return nil
	}
	if userName == "" {
		return fmt.Errorf("%s.user: fcgivisor runs as root and refuses to run %s as root unless told so: set user (e.g. \"www-data\"), or user = \"root\"", key, what)
	}
	if _, err := Credential(userName, groupName); err != nil {
		k := "user"
		if _, uerr := Credential(userName, ""); uerr == nil {
			k = "group"
		}
		return fmt.Errorf("%s.%s: %w", key, k, err)
	}
	return nil
}
