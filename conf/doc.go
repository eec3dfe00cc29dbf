// Package conf decodes, defaults and validates fcgivisor's TOML config into
// an immutable Config. It never touches processes or sockets, and it does not
// look users or groups up: user, group, listen_owner and listen_group are kept
// as written.
//
// # Errors
//
// Load and Parse report every problem they find, not only the first, as an
// Errors value (a list of *Error, one line each):
//
//	fcgivisor.toml:12: pool.php.workerz: unknown key (did you mean "workers"?)
//	fcgivisor.toml:31: http.route[1].pool: no pool "phpp" (pools: go, php)
//
// Keys are written as dotted TOML paths. Arrays, including arrays of tables,
// are indexed from 0 in file order: the first [[http.route]] is http.route[0],
// the first address of http.listen is http.listen[0]. A key that needs quotes
// in TOML is quoted: pool.php.env."A=B". Lines are 1-based; a problem with a
// key that is not in the file (a default) points at the closest enclosing
// table that is, or carries no line. Only a TOML syntax error stops decoding,
// so it is reported alone.
//
// # Keys and defaults
//
// Unknown keys are errors, and keys match case-sensitively ("Workers" is not
// "workers"). A key that is absent from the file gets its default; a key that
// is present keeps its value, even zero, and is validated as written (for
// example workers = 0 is an error for static scaling, not "use the default").
// Durations must be strings such as "30s": a bare integer would be read as
// nanoseconds, so it is refused. listen_mode must be a quoted octal string
// ("0660"): an integer cannot tell 0o660 from 660.
//
// For ondemand scaling the floor is 0 whatever min_workers says: Load checks
// min_workers as written, then sets Pool.MinWorkers to 0 so that callers can
// use it as the floor for every mode.
//
// # Paths
//
// Relative paths are resolved against the directory holding the config file
// (made absolute with the working directory at load time), so a config works
// the same whatever directory fcgivisor is started from: server.runtime_dir,
// server.pid_file, server.log_file, http.document_root, pool dir, the cgi and
// static directories of routes, and the paths of Unix socket addresses
// (http.listen, admin.listen, pool listen). After Load these are absolute and
// cleaned, and every Unix socket address reads "unix:/abs/path"; TCP
// addresses are kept as written. An empty path stays empty. command[0] is left
// as written: the spawner looks it up in PATH or relative to the pool's dir.
package conf
