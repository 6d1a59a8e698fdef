package blueprint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// MaxSearchDepth is how many directory levels below the working directory
// and each search path Resolve looks for manifests: deep enough for
// repo/examples/name/, shallow enough to stay fast in a home directory.
const MaxSearchDepth = 4

// Resolve finds the package that --package names. A path (it contains a
// separator, starts with ".", or is an existing directory or .toml file) is
// loaded as is. Anything else is a
// package name, looked up in the working directory tree and then in each
// search path, matching the manifest's name; it must match exactly one.
func Resolve(nameOrPath string, searchPaths []string) (*Package, error) {
	if isPathLike(nameOrPath) {
		return Load(nameOrPath)
	}
	if !nameRE.MatchString(nameOrPath) {
		return nil, fmt.Errorf("resolve package: %q is neither an existing path nor a valid package name", nameOrPath)
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("resolve package: %w", err)
	}
	roots := append([]string{wd}, searchPaths...)

	var matches, looked, skipped []string
	seen := map[string]bool{}
	for _, root := range roots {
		abs, err := filepath.Abs(root)
		if err != nil {
			return nil, fmt.Errorf("resolve package: %w", err)
		}
		if _, err := os.Stat(abs); err != nil {
			looked = append(looked, abs+" (missing)")
			continue
		}
		looked = append(looked, abs)
		for _, file := range findManifests(abs, MaxSearchDepth) {
			if seen[file] {
				continue // the working directory may contain a search path
			}
			seen[file] = true
			name, err := manifestName(file)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s (%v)", file, err))
				continue
			}
			if name == nameOrPath {
				matches = append(matches, file)
			}
		}
	}

	switch len(matches) {
	case 1:
		return Load(matches[0])
	case 0:
		msg := fmt.Sprintf("no blueprint.toml named %q within %d levels of: %s",
			nameOrPath, MaxSearchDepth, strings.Join(looked, ", "))
		if len(skipped) > 0 {
			msg += "; unreadable manifests skipped: " + strings.Join(skipped, ", ")
		}
		return nil, &notFoundError{msg: "resolve package: " + msg}
	default:
		return nil, fmt.Errorf("resolve package: name %q is ambiguous, pass a path to one of: %s",
			nameOrPath, strings.Join(matches, ", "))
	}
}

func isPathLike(s string) bool {
	if strings.ContainsRune(s, '/') || strings.ContainsRune(s, filepath.Separator) || strings.HasPrefix(s, ".") {
		return true
	}
	// A bare word that exists counts as a path only when it could be a
	// package: in a package directory the built binary is often named like
	// the package, and `--package echo` there means the package, not the file.
	fi, err := os.Stat(s)
	if err != nil {
		return false
	}
	return fi.IsDir() || strings.HasSuffix(s, ".toml")
}

// findManifests lists blueprint.toml files at most depth directories below
// root, skipping directories that hold dependencies, VCS data or fixtures
// rather than the operator's packages. Unreadable directories are skipped:
// a lookup by name should not fail over a stray permission problem.
func findManifests(root string, depth int) []string {
	var found []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && path != root {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path == root {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") || name == "node_modules" || name == "vendor" || name == "testdata" {
				return fs.SkipDir
			}
			rel, _ := filepath.Rel(root, path)
			if strings.Count(rel, string(filepath.Separator))+1 > depth {
				return fs.SkipDir
			}
			return nil
		}
		if d.Name() == ManifestFile && d.Type().IsRegular() {
			found = append(found, path)
		}
		return nil
	})
	return found
}

// manifestName reads only the name, leniently: the full, strict Load runs on
// the one that matches and reports its problems then.
func manifestName(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	if len(data) > maxManifestBytes {
		return "", fmt.Errorf("larger than %d bytes", maxManifestBytes)
	}
	var v struct {
		Name string `toml:"name"`
	}
	if err := toml.Unmarshal(data, &v); err != nil {
		return "", err
	}
	return v.Name, nil
}

// ErrNotFound is wrapped by Resolve's error when no package has the name.
var ErrNotFound = errors.New("package not found")

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return ErrNotFound }
