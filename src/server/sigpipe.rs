//! SIGPIPE on Herald's threads.

/// Herald's threads write to sockets whose peer may be gone, and such a write raises
/// SIGPIPE, whose default action ends the process. Rust programs ignore it, but a C host
/// may not, and Go ignores it only on its own threads. Blocked on Herald's threads, the
/// signal stays pending there and the write fails with EPIPE, as it already reports;
/// the host's own signal handling is left alone.
pub(super) fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: changes the calling thread's signal mask only; `set` is initialized by
    // sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
