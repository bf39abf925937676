//! The dispatcher: host calls, performed in the order the host made them.

use crate::fanout::{Fanout, HostPublication};
use crate::rollup::Rollup;
use crate::shared::Shared;
use crate::transport::wire::Frame;
use crate::transport::write_pass;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Host calls handled per dispatcher wake-up.
const DISPATCH_BATCH: usize = 256;

/// A host call, performed by the dispatcher in the order the host made it.
pub(super) enum Command {
    Publish {
        channel: String,
        publication: HostPublication,
    },
    Broadcast(Frame),
    Send {
        client_id: String,
        message: Frame,
    },
    /// Answered once everything queued before it has been dispatched.
    Barrier(oneshot::Sender<()>),
}

pub(super) async fn dispatch(shared: Arc<Shared>, mut commands: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(DISPATCH_BATCH);
    let fanout = &shared.fanout;
    let mut rollup = Rollup::new(shared.config.ai.delta_rollup_ms);
    let mut to_write = Vec::new();
    let mut run = Vec::new();
    loop {
        let received = match rollup.next_due() {
            Some(due) => tokio::select! {
                n = commands.recv_many(&mut batch, DISPATCH_BATCH) => n,
                _ = tokio::time::sleep_until(due) => {
                    write_pass::run(&shared, &mut to_write, || {
                        rollup.flush_due(fanout, tokio::time::Instant::now());
                    });
                    continue;
                }
            },
            None => commands.recv_many(&mut batch, DISPATCH_BATCH).await,
        };
        if received == 0 {
            rollup.flush_all(fanout);
            return;
        }
        // The batch's subscribers are written once each after it, from this thread.
        write_pass::run(&shared, &mut to_write, || {
            let mut handled = 0;
            while !batch.is_empty() {
                handled += batch.len();
                handle(&mut batch, fanout, &mut rollup, &mut run);
                // Calls made meanwhile join this pass, so a host's burst is one write per
                // subscriber however the dispatcher's wake-ups happened to cut it.
                while handled + batch.len() < DISPATCH_BATCH {
                    match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
            }
        });
        // A connection this batch woke (its socket did not take everything) waits in this
        // worker's LIFO slot, which no other worker may steal: with more calls waiting,
        // let it run first, or a busy dispatcher would starve it into eviction.
        if !commands.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

/// Performs the calls in `batch`, in order, consecutive publications to one channel
/// together (`run` is their reused buffer).
fn handle(
    batch: &mut Vec<Command>,
    fanout: &Fanout,
    rollup: &mut Rollup,
    run: &mut Vec<HostPublication>,
) {
    let mut commands = batch.drain(..).peekable();
    while let Some(command) = commands.next() {
        match command {
            Command::Publish {
                channel,
                publication,
            } => match publication.job {
                Some((session, update)) if rollup.takes(&update) => {
                    rollup.add(fanout, channel, session, update, publication.hold);
                }
                job => {
                    // What the session holds goes first: its order never changes.
                    rollup.flush(fanout, &channel);
                    run.push(HostPublication { job, ..publication });
                    // The publications to this channel that follow go with it.
                    while let Some(Command::Publish { publication, .. }) =
                        commands.next_if(|next| continues_run(next, &channel, rollup))
                    {
                        run.push(publication);
                    }
                    fanout.publish_run(&channel, run.drain(..));
                }
            },
            Command::Broadcast(message) => fanout.broadcast(&message),
            Command::Send { client_id, message } => {
                fanout.send(&client_id, message);
            }
            Command::Barrier(done) => {
                // A stop delivers every call made before it, held deltas included.
                rollup.flush_all(fanout);
                let _ = done.send(());
            }
        }
    }
}

/// A publication to `channel` that the rollup does not hold: it joins the run before it.
fn continues_run(command: &Command, channel: &str, rollup: &Rollup) -> bool {
    match command {
        Command::Publish {
            channel: next,
            publication,
        } => {
            next == channel
                && !matches!(&publication.job, Some((_, update)) if rollup.takes(update))
        }
        _ => false,
    }
}
