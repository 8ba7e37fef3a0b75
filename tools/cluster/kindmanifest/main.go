// Command kindmanifest prints a string constant of a Go package directory, evaluated from its
// source: scripts/cluster/build.sh reads kind's default storage manifest and image names out of
// sigs.k8s.io/kind/pkg/build/nodeimage (in the module cache, at the version tools/cluster/kind
// pins), so that the node image made here carries exactly what `kind build node-image` writes.
//
//	kindmanifest DIR NAME
//
// Only constant string expressions are supported: literals, names of other constants of the same
// package, and concatenation with +.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: kindmanifest DIR CONSTANT")
		os.Exit(2)
	}
	consts, err := parseConsts(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kindmanifest:", err)
		os.Exit(1)
	}
	value, err := eval(consts, ast.NewIdent(os.Args[2]), 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kindmanifest:", err)
		os.Exit(1)
	}
	fmt.Print(value)
}

// parseConsts maps each package-level constant of the non-test Go files in dir to its expression.
func parseConsts(dir string) (map[string]ast.Expr, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	consts := map[string]ast.Expr{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			return nil, err
		}
		for _, decl := range file.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						consts[id.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	if len(consts) == 0 {
		return nil, fmt.Errorf("no constants in %s", dir)
	}
	return consts, nil
}

func eval(consts map[string]ast.Expr, expr ast.Expr, depth int) (string, error) {
	if depth > 32 {
		return "", fmt.Errorf("constant nested too deep")
	}
	switch e := expr.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", fmt.Errorf("not a string literal: %s", e.Value)
		}
		return strconv.Unquote(e.Value)
	case *ast.Ident:
		def, ok := consts[e.Name]
		if !ok {
			return "", fmt.Errorf("no constant %q", e.Name)
		}
		return eval(consts, def, depth+1)
	case *ast.ParenExpr:
		return eval(consts, e.X, depth+1)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", fmt.Errorf("unsupported operator %s", e.Op)
		}
		left, err := eval(consts, e.X, depth+1)
		if err != nil {
			return "", err
		}
		right, err := eval(consts, e.Y, depth+1)
		if err != nil {
			return "", err
		}
		return left + right, nil
	}
	return "", fmt.Errorf("unsupported expression %T", expr)
}
