//go:build herald_dynamic && !herald_external && !herald_pkgconfig

package herald

// Opt-in dynamic linking (`go build -tags herald_dynamic`): links against
// target/release/libherald.so and records its directory as an rpath, so the
// binary finds the library without LD_LIBRARY_PATH as long as the checkout
// stays where it is.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lherald
*/
import "C"
