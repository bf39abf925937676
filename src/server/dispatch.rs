//! The dispatcher: host calls, performed in the order the host made them.

use crate::fanout::ChannelHold;
use crate::protocol::OpenObject;
use crate::shared::Shared;
use crate::transport::wire::Frame;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Host calls handled per dispatcher wake-up.
const DISPATCH_BATCH: usize = 256;

/// A host call, performed by the dispatcher in the order the host made it.
pub(super) enum Command {
    Publish {
        channel: String,
        message: OpenObject,
        hold: ChannelHold,
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
    while commands.recv_many(&mut batch, DISPATCH_BATCH).await > 0 {
        for command in batch.drain(..) {
            match command {
                Command::Publish {
                    channel,
                    message,
                    hold,
                } => shared.fanout.publish(&channel, message, hold),
                Command::Broadcast(message) => shared.fanout.broadcast(&message),
                Command::Send { client_id, message } => {
                    shared.fanout.send(&client_id, message);
                }
                Command::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}
