//! `ai.delta_rollup_ms`: a job's `ai_delta`s made within the window become one
//! publication, for every subscriber, so a fast token stream costs fewer frames, seqs and
//! history entries. Held in the dispatcher (memory broker): any other publication to the
//! session, and a stop, sends what is held first, so the session's order never changes.

use crate::fanout::{ChannelHold, Fanout};
use crate::jobs::JobUpdate;
use crate::protocol::{self, AiEvent};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// One job's deltas waiting for the end of their window.
struct Held {
    session: String,
    job_id: Option<String>,
    text: String,
    /// The channel place (or pin) of the first delta; those of the others were given back.
    hold: ChannelHold,
    due: Instant,
}

pub(crate) struct Rollup {
    window: Duration,
    /// By channel: at most one job's deltas per session at a time.
    held: HashMap<String, Held>,
}

impl Rollup {
    pub fn new(window_ms: u64) -> Rollup {
        Rollup {
            window: Duration::from_millis(window_ms),
            held: HashMap::new(),
        }
    }

    /// Whether this update is held and merged rather than published at once.
    pub fn takes(&self, update: &JobUpdate) -> bool {
        !self.window.is_zero() && update.event == AiEvent::Delta
    }

    /// When the earliest window ends.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|h| h.due).min()
    }

    /// Keeps a delta; what another job of the session held is sent first.
    pub fn add(
        &mut self,
        fanout: &Fanout,
        channel: String,
        session: String,
        update: JobUpdate,
        hold: ChannelHold,
    ) {
        if let Some(held) = self.held.get_mut(&channel) {
            if held.job_id == update.job_id {
                held.text.push_str(&update.text);
                fanout.release_hold(&channel, hold);
                return;
            }
            self.flush(fanout, &channel);
        }
        let held = Held {
            session,
            job_id: update.job_id,
            text: update.text,
            hold,
            due: Instant::now() + self.window,
        };
        self.held.insert(channel, held);
    }

    /// Sends what is held for `channel`, if anything.
    pub fn flush(&mut self, fanout: &Fanout, channel: &str) {
        if let Some(held) = self.held.remove(channel) {
            publish(fanout, channel, held);
        }
    }

    /// Sends what is due by `now`.
    pub fn flush_due(&mut self, fanout: &Fanout, now: Instant) {
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.due <= now)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in due {
            self.flush(fanout, &channel);
        }
    }

    pub fn flush_all(&mut self, fanout: &Fanout) {
        for (channel, held) in self.held.drain() {
            publish(fanout, &channel, held);
        }
    }
}

/// One `ai_delta` with the held text, as if the host had made it now.
fn publish(fanout: &Fanout, channel: &str, held: Held) {
    let mut payload = serde_json::Map::new();
    if let Some(job) = &held.job_id {
        payload.insert("jobId".into(), job.clone().into());
    }
    payload.insert("text".into(), held.text.clone().into());
    let payload = serde_json::Value::Object(payload).to_string();
    let built = protocol::ai_notification(AiEvent::Delta, &held.session, &payload);
    let Ok(message) = built else {
        // Built from a checked session id and a JSON object: cannot fail.
        fanout.release_hold(channel, held.hold);
        return;
    };
    let update = JobUpdate {
        event: AiEvent::Delta,
        job_id: held.job_id,
        payload,
        text: held.text,
    };
    fanout.publish(channel, message, held.hold, Some((held.session, update)));
}
