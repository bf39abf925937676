//go:build !herald_dynamic && !herald_external && !herald_pkgconfig

package herald

// Default linking: the core's static library, so the resulting Go binary has
// no runtime dependency on libherald. Build the core first with
// `cargo build --release` at the repository root.
//
// The system libraries after the archive are the ones reported by
// `cargo rustc --release -- --print native-static-libs` for the core.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libherald.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
*/
import "C"
