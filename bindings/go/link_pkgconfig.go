//go:build herald_pkgconfig && !herald_external

package herald

// Linking against an installed C SDK (`go build -tags herald_pkgconfig`), found by
// pkg-config: no checkout and no cargo needed, so `go get` plus the SDK is enough.
// herald-static.pc links libherald.a, so the binary stays a single file as with the
// default build. Install the SDK with bindings/c/install.sh (or unpack the SDK tarball)
// and point PKG_CONFIG_PATH at its lib/pkgconfig.

/*
#cgo pkg-config: herald-static
*/
import "C"
