// Command funclen lists the longest functions of the production code (no
// _test.go files, no examples or bench), as issue 9 measures them: lines from
// the func keyword to the closing brace, function literals counted inside
// their enclosing function.
//
//	go run ./hack/funclen [-n 10] [-max 80] [DIR...]
//
// With -max, it exits 1 when any function is longer than that.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type fn struct {
	pos   token.Position
	name  string
	lines int
}

func main() {
	n := flag.Int("n", 10, "how many functions to list")
	max := flag.Int("max", 0, "exit 1 when a function is longer than this (0: never)")
	flag.Parse()
	dirs := flag.Args()
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	fns, err := collect(dirs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "funclen:", err)
		os.Exit(2)
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].lines > fns[j].lines })
	over := 0
	for i, f := range fns {
		if *max > 0 && f.lines > *max {
			over++
		}
		if i < *n {
			fmt.Printf("%4d  %s  %s:%d\n", f.lines, f.name, f.pos.Filename, f.pos.Line)
		}
	}
	if over > 0 {
		fmt.Printf("%d functions over %d lines\n", over, *max)
		os.Exit(1)
	}
}

// skipDir leaves out what is not the daemon: tests, examples, benchmarks,
// this folder.
func skipDir(path string) bool {
	base := filepath.Base(path)
	return base == "examples" || base == "bench" || base == "hack" || base == "integration" ||
		base == "testdata" || (strings.HasPrefix(base, ".") && base != ".")
}

func collect(dirs []string) ([]fn, error) {
	fset := token.NewFileSet()
	var fns []fn
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if skipDir(path) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				fd, ok := decl.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				start := fset.Position(fd.Pos())
				end := fset.Position(fd.End())
				fns = append(fns, fn{pos: start, name: funcName(fd), lines: end.Line - start.Line + 1})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return fns, nil
}

func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if g, ok := t.(*ast.IndexExpr); ok {
		t = g.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return "(" + id.Name + ")." + fd.Name.Name
	}
	return fd.Name.Name
}
