//! Merging a slow client's backlog instead of evicting it: in its queue, a job's
//! `ai_delta`s that follow one another in their channel (consecutive seqs) become one
//! delta with the texts concatenated, and such runs of `ai_progress` keep only the
//! latest. The merged message takes the position (seq) of the last one it replaces, so
//! the client's recovery point stays exact: having processed it means having processed
//! every publication up to that seq, and nothing of the channel lay between them.

use crate::client::Outbound;
use crate::protocol::{self, Position};
use crate::transport::wire::Frame;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delta,
    Progress,
}

/// What merging needs of a queued `ai_delta` or `ai_progress`.
struct Mergeable {
    kind: Kind,
    session: String,
    job: Option<String>,
    seq: u64,
    epoch: String,
    text: String,
    /// How many publications it stands for (more than one once merged).
    merged: usize,
}

/// A run being merged: the queue index of its last message, and what it adds up to.
struct Run {
    last: usize,
    head: Mergeable,
    /// Publications it stands for.
    count: usize,
    /// Queue entries it spans.
    entries: usize,
    text: String,
}

/// Reads a frame that may be merged; most frames are told apart by their first bytes.
fn mergeable(frame: &Frame) -> Option<Mergeable> {
    let text = frame.as_str();
    let kind = if text.starts_with(r#"{"type":"ai_delta""#) {
        Kind::Delta
    } else if text.starts_with(r#"{"type":"ai_progress""#) {
        Kind::Progress
    } else {
        return None;
    };
    #[derive(Deserialize)]
    struct Payload {
        #[serde(rename = "jobId")]
        job_id: Option<String>,
        text: Option<String>,
    }
    #[derive(Deserialize)]
    struct Message {
        #[serde(rename = "sessionId")]
        session_id: String,
        seq: u64,
        epoch: String,
        delta: Option<Payload>,
        progress: Option<Payload>,
        merged: Option<usize>,
    }
    let message: Message = serde_json::from_str(text).ok()?;
    let payload = match kind {
        Kind::Delta => message.delta?,
        Kind::Progress => message.progress?,
    };
    Some(Mergeable {
        kind,
        session: message.session_id,
        job: payload.job_id,
        seq: message.seq,
        epoch: message.epoch,
        text: payload.text.unwrap_or_default(),
        merged: message.merged.unwrap_or(1).max(1),
    })
}

impl Run {
    fn extends(&self, next: &Mergeable) -> bool {
        let head = &self.head;
        head.kind == next.kind
            && head.job == next.job
            && head.epoch == next.epoch
            && next.seq == head.seq + 1
    }
}

/// Merges what can be merged in a client's queue; returns the bytes it freed (as
/// [`Outbound::byte_len`] counts them).
pub(crate) fn compact(entries: &mut VecDeque<Outbound>) -> usize {
    let before: usize = entries.iter().map(Outbound::byte_len).sum();
    let mut dropped = vec![false; entries.len()];
    let mut replaced: Vec<(usize, Frame)> = Vec::new();
    let mut runs: HashMap<String, Run> = HashMap::new();
    let finish = |run: Run, replaced: &mut Vec<(usize, Frame)>| {
        if run.entries > 1 && run.head.kind == Kind::Delta {
            let position = Position {
                seq: run.head.seq,
                epoch: run.head.epoch.clone(),
            };
            let frame = protocol::merged_delta(
                &run.head.session,
                run.head.job.as_deref(),
                &run.text,
                run.count,
                &position,
            );
            replaced.push((run.last, frame));
        }
    };
    for (i, entry) in entries.iter().enumerate() {
        let Outbound::Message(frame) = entry else {
            continue;
        };
        let Some(next) = mergeable(frame) else {
            continue;
        };
        match runs.get_mut(&next.session) {
            Some(run) if run.extends(&next) => {
                dropped[run.last] = true;
                run.last = i;
                run.count += next.merged;
                run.entries += 1;
                run.text.push_str(&next.text);
                run.head.seq = next.seq;
            }
            _ => {
                let run = Run {
                    last: i,
                    text: next.text.clone(),
                    count: next.merged,
                    entries: 1,
                    head: next,
                };
                if let Some(done) = runs.insert(run.head.session.clone(), run) {
                    finish(done, &mut replaced);
                }
            }
        }
    }
    for (_, run) in runs.drain() {
        finish(run, &mut replaced);
    }
    if !dropped.contains(&true) {
        return 0;
    }
    for (at, frame) in replaced {
        entries[at] = Outbound::Message(frame);
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !dropped[index];
        index += 1;
        keep
    });
    let after: usize = entries.iter().map(Outbound::byte_len).sum();
    before.saturating_sub(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AiEvent;

    fn ai(event: AiEvent, session: &str, payload: &str, seq: u64) -> Outbound {
        let open = protocol::ai_notification(event, session, payload).unwrap();
        Outbound::Message(open.close_with_position(seq, "e"))
    }

    fn json(entry: &Outbound) -> serde_json::Value {
        match entry {
            Outbound::Message(frame) => serde_json::from_str(frame.as_str()).unwrap(),
            Outbound::Replay(_) => panic!("a replay"),
        }
    }

    #[test]
    fn consecutive_deltas_of_a_job_merge_and_progress_keeps_the_latest() {
        let mut queue: VecDeque<Outbound> = VecDeque::new();
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"a","text":"He"}"#, 1));
        queue.push_back(ai(AiEvent::Progress, "t", r#"{"pct":1}"#, 7));
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"a","text":"llo"}"#, 2));
        queue.push_back(ai(AiEvent::Progress, "t", r#"{"pct":2}"#, 8));
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"a","text":"!"}"#, 3));
        // Not consecutive with the run: seq 4 (something else of the channel) lies between.
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"a","text":"?"}"#, 5));
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"b","text":"x"}"#, 6));
        let freed = compact(&mut queue);
        assert!(freed > 0);
        let got: Vec<_> = queue.iter().map(json).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0]["progress"]["pct"], 2);
        assert_eq!(got[0]["seq"], 8);
        assert_eq!(got[1]["delta"]["text"], "Hello!");
        assert_eq!(got[1]["delta"]["jobId"], "a");
        assert_eq!(got[1]["seq"], 3);
        assert_eq!(got[1]["merged"], 3);
        assert_eq!(got[2]["delta"]["text"], "?");
        assert_eq!(got[3]["delta"]["jobId"], "b");
        assert_eq!(compact(&mut queue), 0, "nothing left to merge");
        // A merged delta merges again, its count carried.
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"b","text":"y"}"#, 7));
        assert!(compact(&mut queue) > 0);
        let got: Vec<_> = queue.iter().map(json).collect();
        assert_eq!(got[3]["delta"]["text"], "xy");
        assert_eq!(
            (got[3]["merged"].as_u64(), got[3]["seq"].as_u64()),
            (Some(2), Some(7))
        );
        queue.push_back(ai(AiEvent::Delta, "s", r#"{"jobId":"b","text":"z"}"#, 8));
        compact(&mut queue);
        let last = json(queue.back().unwrap());
        assert_eq!(
            (last["delta"]["text"].as_str(), last["merged"].as_u64()),
            (Some("xyz"), Some(3))
        );
    }
}
