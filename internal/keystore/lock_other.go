//go:build !unix

package keystore

import "io/fs"

// lockFile is a no-op where flock does not exist; the in-process mutex still
// serialises writers of one process.
func lockFile(string, bool) (func(), error) { return func() {}, nil }

func inode(fs.FileInfo) uint64 { return 0 }
