//! Sending to many parked sockets at once, for a write pass.
//!
//! One `send` per socket returns to user space after every socket, and that return is
//! where the thread is preempted by a reader the send has just woken: the kernel wakes a
//! socket's reader on the waker's CPU, so on a small machine a pass and its readers take
//! turns on one core, a context switch per message, while the other core idles. With
//! io_uring (Linux), the sends of a group of sockets go in one system call and a woken
//! reader waits for the group, not for every socket. Where the kernel refuses a ring
//! (too old, or forbidden by a sandbox), each socket gets its own `send`.

use crate::client::{Client, Written};
use std::io::{self, IoSlice};
use std::sync::Arc;

#[cfg(unix)]
use crate::transport::write_pass::RawFd;

/// Sockets in a pass's first system call: few, so that its first readers are not kept
/// waiting for many sends; each next call takes twice as many, up to
/// [`MOST_SOCKETS_PER_SUBMISSION`], which spares most of the wake-up preemptions and
/// system calls (at 1,000 subscribers: 7 calls instead of 1,000).
const FIRST_SOCKETS_PER_SUBMISSION: usize = 16;
const MOST_SOCKETS_PER_SUBMISSION: usize = 256;

/// Writes the parked connections of `clients`, telling `done` what each one's socket
/// took (a connection that is not parked is woken instead, and counts as writing
/// nothing); with io_uring when `io_uring` and the kernel allow.
pub(crate) fn write(
    clients: &[Arc<Client>],
    io_uring: bool,
    mut done: impl FnMut(&Client, Written),
) {
    let mut rest = clients;
    #[cfg(not(target_os = "linux"))]
    let _ = io_uring;
    #[cfg(target_os = "linux")]
    if io_uring {
        let mut group_len = FIRST_SOCKETS_PER_SUBMISSION;
        while !rest.is_empty() {
            let group = &rest[..rest.len().min(group_len)];
            if !uring::write(group, &mut done) {
                break;
            }
            rest = &rest[group.len()..];
            group_len = (group_len * 2).min(MOST_SOCKETS_PER_SUBMISSION);
        }
    }
    for client in rest {
        done(client, client.write_parked(send_now));
    }
}

/// One non-blocking send of `slices` on `socket`, which never raises SIGPIPE: `send`
/// for one slice (no message header or vector to copy in), `sendmsg` for several. Socket
/// calls rather than `writev`: they skip the file layer's position lock.
#[cfg(unix)]
fn send_now(socket: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `socket` is the open socket of a parked connection: the caller holds its
    // client's queue lock, and the connection closes the socket only after it has
    // unparked under that lock, so the descriptor stays open for this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket) };
    let socket = socket2::SockRef::from(&fd);
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    match slices {
        [one] => socket.send_with_flags(one, flags),
        _ => socket.send_vectored_with_flags(slices, flags),
    }
}

#[cfg(not(unix))]
fn send_now(
    _socket: crate::transport::write_pass::RawFd,
    _slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(target_os = "linux")]
mod uring {
    use super::MOST_SOCKETS_PER_SUBMISSION;
    use crate::client::{Busy, Client, ParkedWrite, Written};
    use crate::transport::wire::MAX_IOV;
    use io_uring::{opcode, types, IoUring};
    use std::cell::RefCell;
    use std::io::IoSlice;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    thread_local! {
        /// This thread's ring, made on its first pass.
        static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
    }

    /// Set once a ring could not be made or failed: every pass then sends socket by socket.
    static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

    /// What one connection of a group sends.
    enum Planned {
        /// Not parked, or nothing it may send.
        Nothing,
        One(*const u8, usize),
        /// `count` slices from `first` in the group's slice list.
        Many {
            first: usize,
            count: usize,
        },
    }

    /// Writes `group` with one submission; false (having written nothing) when this
    /// thread has no ring.
    pub(super) fn write(group: &[Arc<Client>], done: &mut impl FnMut(&Client, Written)) -> bool {
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return false;
        }
        RING.with(|cell| {
            let Ok(mut slot) = cell.try_borrow_mut() else {
                return false;
            };
            if slot.is_none() {
                // Submitting all: a request refused at submission must not leave the
                // ones after it unsubmitted while this thread waits for them (5.18+).
                let made = IoUring::builder()
                    .setup_submit_all()
                    .build(MOST_SOCKETS_PER_SUBMISSION as u32);
                match made {
                    Ok(ring) => *slot = Some(ring),
                    Err(error) => {
                        tracing::debug!(%error, "no io_uring: write passes send socket by socket");
                        UNAVAILABLE.store(true, Ordering::Relaxed);
                        return false;
                    }
                }
            }
            let ring = slot.as_mut().expect("made above");
            if !write_group(ring, group, done) {
                // What the kernel may still hold of the failed submission dies with the ring.
                *slot = None;
                UNAVAILABLE.store(true, Ordering::Relaxed);
            }
            true
        })
    }

    /// Locks each parked connection of `group`, submits their sends at once and waits
    /// for all of them (non-blocking sends complete during the submission), then tells
    /// `done` what each socket took. A queue locked elsewhere (or one this group already
    /// holds: a connection that ran and parked again during the batch is collected twice)
    /// is written on its own once the group's locks are released. False if the ring
    /// failed; what it did not report counts as not sent, and those connections write for
    /// themselves.
    fn write_group(
        ring: &mut IoUring,
        group: &[Arc<Client>],
        done: &mut impl FnMut(&Client, Written),
    ) -> bool {
        let mut busy = Vec::new();
        let mut writes: Vec<(&Client, Option<ParkedWrite<'_>>)> = Vec::with_capacity(group.len());
        for client in group {
            match client.try_lock_parked() {
                Ok(write) => writes.push((client, write)),
                Err(Busy) => busy.push(client),
            }
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::new();
        let mut plans = Vec::with_capacity(group.len());
        for (_, write) in &writes {
            let plan = match write {
                None => Planned::Nothing,
                Some(write) => match write.only() {
                    Some(bytes) => Planned::One(bytes.as_ptr(), bytes.len()),
                    None => {
                        let first = slices.len();
                        slices.resize(first + MAX_IOV, IoSlice::new(&[]));
                        let count = write.slices(&mut slices[first..]);
                        slices.truncate(first + count);
                        match count {
                            0 => Planned::Nothing,
                            _ => Planned::Many { first, count },
                        }
                    }
                },
            };
            plans.push(plan);
        }
        // Message headers for the connections with several slices (none, and no
        // allocation, in the usual one-message case); `slices` no longer grows, so the
        // pointers into it hold, and those into `headers` are taken once it is complete.
        let mut headers: Vec<libc::msghdr> = Vec::new();
        for plan in &plans {
            if let Planned::Many { first, count } = *plan {
                // SAFETY: an all-zero msghdr is a valid empty one (no name, no control).
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                // IoSlice is ABI-compatible with iovec on Unix.
                header.msg_iov = slices[first..].as_ptr() as *mut libc::iovec;
                header.msg_iovlen = count as _;
                headers.push(header);
            }
        }
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let mut submitted = 0;
        let mut header_index = 0;
        for (index, (plan, (_, write))) in plans.iter().zip(&writes).enumerate() {
            let Some(write) = write else { continue };
            let socket = types::Fd(write.socket);
            let entry = match *plan {
                Planned::Nothing => continue,
                Planned::One(bytes, len) => {
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    opcode::Send::new(socket, bytes, len).flags(flags).build()
                }
                Planned::Many { .. } => {
                    header_index += 1;
                    opcode::SendMsg::new(socket, &headers[header_index - 1])
                        .flags(flags as u32)
                        .build()
                }
            };
            // SAFETY: the bytes (queued frames, held by the locked queues in `writes`),
            // `slices` and `headers` stay alive and unmoved until every completion of
            // this submission has been reaped below; the socket stays open while its
            // queue is locked (see `Client::lock_parked`).
            let pushed = unsafe { ring.submission().push(&entry.user_data(index as u64)) };
            if pushed.is_err() {
                break; // never: the ring holds a group
            }
            submitted += 1;
        }
        let mut sent = vec![0usize; writes.len()];
        let mut reaped = 0;
        let mut healthy = true;
        while reaped < submitted {
            match ring.submit_and_wait(submitted - reaped) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::warn!(%error, "io_uring submission failed: write passes send socket by socket from now on");
                    healthy = false;
                }
            }
            for completion in ring.completion() {
                reaped += 1;
                // An error is left to the connection, whose own write meets it.
                if let (Some(slot), Ok(bytes)) = (
                    sent.get_mut(completion.user_data() as usize),
                    usize::try_from(completion.result()),
                ) {
                    *slot = bytes;
                }
            }
            if !healthy {
                break;
            }
        }
        drop(headers);
        drop(slices);
        for ((client, write), sent) in writes.into_iter().zip(sent) {
            done(
                client,
                write.map(|write| write.finish(sent)).unwrap_or_default(),
            );
        }
        for client in busy {
            done(client, client.write_parked(super::send_now));
        }
        healthy
    }
}
