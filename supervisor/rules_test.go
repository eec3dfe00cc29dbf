package supervisor

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLockRules checks the package's own source against the lock rules at
// the top of pool.go, as far as syntax tells:
//   - a function ending in Locked, and any statement between p.mu.Lock()
//     and p.mu.Unlock() (or after defer p.mu.Unlock()), neither logs nor
//     signals (func literals are not looked into: they run later);
//   - workers are signalled only by effects.run (and the Parent adapter);
//   - a function reads the config (p.conf() or p.decide()) at most once,
//     and a Locked one not at all (it is handed the decision's cfg).
func TestLockRules(t *testing.T) {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("*.go")
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			checkFunc(t, fset, fn)
		}
	}
}

func checkFunc(t *testing.T, fset *token.FileSet, fn *ast.FuncDecl) {
	t.Helper()
	name := fn.Name.Name
	if fn.Recv != nil {
		name = recvName(fn.Recv.List[0].Type) + "." + name
	}
	locked := strings.HasSuffix(fn.Name.Name, "Locked")
	confs := 0
	inspectCalls(fn.Body, func(call *ast.CallExpr) {
		pos := fset.Position(call.Pos())
		switch {
		case isMethod(call, "conf") || isMethod(call, "decide"):
			confs++
			if locked {
				t.Errorf("%s: %s reads the config; a Locked function uses the decision's cfg", pos, name)
			}
		case isMethod(call, "SignalGroup") && name != "effects.run" && !strings.HasPrefix(name, "reaped."):
			t.Errorf("%s: %s signals a worker itself; send it through effects", pos, name)
		case locked && (isLog(call) || isMethod(call, "SignalGroup")):
			t.Errorf("%s: %s logs or signals; a Locked function appends to effects", pos, name)
		}
	})
	if confs > 1 {
		t.Errorf("%s: %s reads the config %d times (p.conf, p.decide); read it once per decision", fset.Position(fn.Pos()), name, confs)
	}
	// Statements run while p.mu is held, block by block.
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if _, ok := n.(*ast.FuncLit); ok {
			return false
		}
		block, ok := n.(*ast.BlockStmt)
		if !ok {
			return true
		}
		held := false
		for _, stmt := range block.List {
			switch {
			case isMuCall(stmt, "Lock"):
				held = true
			case isMuCall(stmt, "Unlock"):
				held = false
			case isDeferUnlock(stmt):
				// held until the function returns
			case held:
				inspectCalls(stmt, func(call *ast.CallExpr) {
					if isLog(call) || isMethod(call, "SignalGroup") {
						t.Errorf("%s: %s logs or signals while holding p.mu", fset.Position(call.Pos()), name)
					}
				})
			}
		}
		return true
	})
}

// inspectCalls calls f for each call in n, not looking into func literals.
func inspectCalls(n ast.Node, f func(*ast.CallExpr)) {
	ast.Inspect(n, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.CallExpr:
			f(n)
		}
		return true
	})
}

func isMethod(call *ast.CallExpr, name string) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == name
}

// isLog: a slog method called on something named log (p.log, w.log).
func isLog(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	switch sel.Sel.Name {
	case "Debug", "Info", "Warn", "Error", "Log", "LogAttrs":
	default:
		return false
	}
	switch x := sel.X.(type) {
	case *ast.Ident:
		return x.Name == "log"
	case *ast.SelectorExpr:
		return x.Sel.Name == "log"
	}
	return false
}

// isMuCall: the statement p.mu.<method>().
func isMuCall(stmt ast.Stmt, method string) bool {
	es, ok := stmt.(*ast.ExprStmt)
	if !ok {
		return false
	}
	call, ok := es.X.(*ast.CallExpr)
	if !ok || !isMethod(call, method) {
		return false
	}
	x, ok := call.Fun.(*ast.SelectorExpr).X.(*ast.SelectorExpr)
	return ok && x.Sel.Name == "mu"
}

func isDeferUnlock(stmt ast.Stmt) bool {
	d, ok := stmt.(*ast.DeferStmt)
	return ok && isMuCall(&ast.ExprStmt{X: d.Call}, "Unlock")
}

func recvName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return recvName(e.X)
	case *ast.Ident:
		return e.Name
	}
	return "?"
}
