//! The panic boundary, argument conversion, the per-thread last error and the host's
//! user data.

use super::{herald_drop_callback, herald_status};
use crate::error::{Error, ErrorKind, Result};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// Set while this thread runs a call behind the boundary.
    static IN_BOUNDARY: Cell<bool> = const { Cell::new(false) };
}

/// A panic behind the boundary reaches the host as `HERALD_ERR_PANIC` and its message, so
/// the default hook's print to the host's stderr would only repeat it: such panics go to
/// the log instead (`HERALD_LOG`). Every other panic goes to the hook installed before.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_BOUNDARY.with(Cell::get) {
                tracing::error!("panic behind the C boundary: {info}");
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `call` with panics caught, marked as behind the boundary (calls may nest).
fn catch_behind_boundary<T>(call: impl FnOnce() -> T) -> std::thread::Result<T> {
    install_quiet_panic_hook();
    let outer = IN_BOUNDARY.with(|flag| flag.replace(true));
    let result = catch_unwind(AssertUnwindSafe(call));
    IN_BOUNDARY.with(|flag| flag.set(outer));
    result
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).expect("NULs were escaped");
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

pub(super) fn last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::new(
        ErrorKind::Panic,
        format!("internal error (panic): {detail}"),
    )
}

fn fail(error: Error) -> herald_status {
    set_last_error(error.message());
    error.kind().into()
}

/// Runs a call behind the panic boundary and turns its result into a status.
pub(super) fn guard(call: impl FnOnce() -> Result<()>) -> herald_status {
    match catch_behind_boundary(call) {
        Ok(Ok(())) => herald_status::HERALD_OK,
        Ok(Err(error)) => fail(error),
        Err(payload) => fail(panic_error(payload)),
    }
}

/// Borrows a required C string argument as UTF-8.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives `'a`.
pub(super) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    // SAFETY: passed on from this function's own contract.
    unsafe { optional_c_str(ptr, name) }?
        .ok_or_else(|| Error::new(ErrorKind::NullArgument, format!("{name} is NULL")))
}

/// Borrows an optional C string argument as UTF-8.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives `'a`.
pub(super) unsafe fn optional_c_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL, and by this function's contract NUL-terminated and alive for 'a.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map(Some).map_err(|e| {
        Error::new(
            ErrorKind::InvalidUtf8,
            format!("{name} is not valid UTF-8: {e}"),
        )
    })
}

/// Checks that an out-parameter is not NULL, before any work whose result it would take.
pub(super) fn require_out<T>(out: *mut T, name: &str) -> Result<()> {
    if out.is_null() {
        return Err(Error::new(
            ErrorKind::NullArgument,
            format!("{name} is NULL"),
        ));
    }
    Ok(())
}

/// Writes a value to an out-parameter, on success only.
///
/// # Safety
/// `out` is NULL or valid for a write of a `T`.
pub(super) unsafe fn write_out<T>(out: *mut T, name: &str, value: T) -> Result<()> {
    require_out(out, name)?;
    // SAFETY: not NULL, and by this function's contract writable.
    unsafe { out.write(value) };
    Ok(())
}

/// Writes an owned string to an out-parameter (freed with `herald_string_free`).
///
/// # Safety
/// `out` is NULL or valid for a write of a pointer.
pub(super) unsafe fn write_string(out: *mut *mut c_char, name: &str, value: String) -> Result<()> {
    require_out(out, name)?;
    let value = CString::new(value)
        .map_err(|_| Error::new(ErrorKind::Panic, "output contained a NUL byte"))?;
    // SAFETY: passed on from this function's own contract.
    unsafe { write_out(out, name, value.into_raw()) }
}

/// A host's `user_data` pointer and its drop callback: owned by Herald from the call
/// that hands them over, and handed back to `drop` exactly once, when this is dropped.
/// Herald never dereferences the pointer.
pub(super) struct UserData {
    pointer: *mut c_void,
    drop: herald_drop_callback,
}

// SAFETY: Herald never dereferences the pointer; by handing it over with a callback the
// host vouches that its callback and its drop may receive it on Herald's threads.
unsafe impl Send for UserData {}
// SAFETY: as for Send; Herald only copies the pointer.
unsafe impl Sync for UserData {}

impl UserData {
    pub fn new(pointer: *mut c_void, drop: herald_drop_callback) -> Self {
        UserData { pointer, drop }
    }

    // A method, so closures capture the whole owner rather than its raw field.
    pub fn get(&self) -> *mut c_void {
        self.pointer
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(drop) = self.drop {
            // SAFETY: the host registered `drop` for this pointer; this is its one call,
            // made after the last call of the callback that received the pointer.
            unsafe { drop(self.pointer) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_behind_the_boundary_is_a_status_and_a_message() {
        let status = guard(|| panic!("boom {}", 7));
        assert_eq!(status, herald_status::HERALD_ERR_PANIC);
        // SAFETY: last_error returns a NUL-terminated string valid until the next failure.
        let message = unsafe { CStr::from_ptr(last_error()) }.to_str().unwrap();
        assert_eq!(message, "internal error (panic): boom 7");
        // The mark is gone once the call returns, so later panics on this thread reach
        // the previous hook again.
        assert!(!IN_BOUNDARY.with(Cell::get));
        let nested = guard(|| {
            assert_eq!(guard(|| Ok(())), herald_status::HERALD_OK);
            assert!(
                IN_BOUNDARY.with(Cell::get),
                "a nested call cleared the mark"
            );
            Ok(())
        });
        assert_eq!(nested, herald_status::HERALD_OK);
        assert!(!IN_BOUNDARY.with(Cell::get));
    }
}
