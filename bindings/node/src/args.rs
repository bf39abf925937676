//! Reading JS string arguments without allocating.

use std::mem::MaybeUninit;

use napi::bindgen_prelude::*;

/// Bytes a string argument may take (UTF-8) and still be read without allocating: ids
/// are at most 256 bytes and most messages are well under this.
const INLINE_ARG_BYTES: usize = 2048;

/// A JS string argument read as UTF-8 into a stack buffer: one `napi_get_value_string_utf8`
/// call and no allocation when it fits; otherwise read into a `String` like napi-rs does.
pub(crate) struct Utf8Arg {
    inline: MaybeUninit<[u8; INLINE_ARG_BYTES]>,
    spilled: String,
}

impl Utf8Arg {
    pub(crate) fn new() -> Self {
        Self {
            inline: MaybeUninit::uninit(),
            spilled: String::new(),
        }
    }

    /// Argument `index` of the call, which must be a string.
    pub(crate) fn read(&mut self, ctx: &FunctionCallContext<'_>, index: usize) -> Result<&str> {
        let value = ctx.get::<Unknown<'_>>(index)?;
        let env = ctx.env.raw();
        let mut written = 0;
        // SAFETY: napi writes at most INLINE_ARG_BYTES bytes (the last one a NUL) and reports
        // how many it wrote before the NUL; only those are read.
        let status = unsafe {
            napi::sys::napi_get_value_string_utf8(
                env,
                value.raw(),
                self.inline.as_mut_ptr().cast(),
                INLINE_ARG_BYTES,
                &mut written,
            )
        };
        if status != napi::sys::Status::napi_ok {
            return Err(napi::Error::new(
                Status::StringExpected,
                format!("argument {index} must be a string"),
            ));
        }
        // V8 writes whole characters only (at most 4 bytes each): with 4 bytes to spare
        // (besides the NUL) nothing was cut off. Otherwise read the string at full length.
        let bytes = if INLINE_ARG_BYTES - 1 - written >= 4 {
            // SAFETY: the first `written` bytes were initialized by the call above.
            unsafe { std::slice::from_raw_parts(self.inline.as_ptr().cast::<u8>(), written) }
        } else {
            // SAFETY: `value` is a string value of the current call.
            self.spilled = unsafe { String::from_napi_value(env, value.raw())? };
            self.spilled.as_bytes()
        };
        std::str::from_utf8(bytes).map_err(|e| napi::Error::new(Status::InvalidArg, e.to_string()))
    }
}
