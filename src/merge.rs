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
    use proptest::prelude::*;

    fn ai(event: AiEvent, session: &str, payload: &str, seq: u64) -> Outbound {
        let open = protocol::ai_notification(event, session, payload).unwrap();
        Outbound::Message(open.close_with_position(seq, "e"))
    }

    fn json(entry: &Outbound) -> serde_json::Value {
        match entry {
            Outbound::Message(frame) => serde_json::from_str(frame.as_str()).unwrap(),
            Outbound::Replay(_) | Outbound::Rest(_) => panic!("not a message"),
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

    /// What a client makes of one session: the text of each job, the latest progress, the
    /// last seq, and whether a seq ever failed to grow.
    #[derive(Debug, Default, PartialEq)]
    struct Made {
        texts: Vec<(String, String)>,
        progress: Option<String>,
        last: u64,
        disordered: bool,
    }

    /// What a client makes of its queue, per session.
    fn outcome(queue: &VecDeque<Outbound>) -> std::collections::BTreeMap<String, Made> {
        let mut seen: std::collections::BTreeMap<String, Made> = Default::default();
        for entry in queue {
            let m = json(entry);
            let made = seen
                .entry(m["sessionId"].as_str().unwrap().to_string())
                .or_default();
            let seq = m["seq"].as_u64().unwrap();
            made.disordered |= seq <= made.last;
            made.last = seq;
            if m["type"] == "ai_delta" {
                let job = m["delta"]["jobId"].as_str().unwrap_or("").to_string();
                let text = m["delta"]["text"].as_str().unwrap();
                match made.texts.iter_mut().find(|(j, _)| *j == job) {
                    Some((_, t)) => t.push_str(text),
                    None => made.texts.push((job, text.to_string())),
                }
            } else {
                made.progress = Some(m["progress"].to_string());
            }
        }
        seen
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Whatever the interleaving of sessions, jobs and kinds, merging keeps each job's
        /// text, each session's latest progress and last seq, and the order of seqs.
        #[test]
        fn merging_keeps_what_a_client_makes_of_its_queue(
            steps in proptest::collection::vec((0..3usize, 0..3usize, any::<bool>(), "[a-z€]{0,3}"), 0..60)
        ) {
            let mut queue: VecDeque<Outbound> = VecDeque::new();
            let mut seqs = [0u64; 3];
            for (session, job, is_delta, text) in steps {
                seqs[session] += 1;
                let name = format!("s{session}");
                let payload = if is_delta {
                    serde_json::json!({"jobId": format!("j{job}"), "text": text}).to_string()
                } else {
                    serde_json::json!({"jobId": format!("j{job}"), "n": seqs[session]}).to_string()
                };
                let event = if is_delta { AiEvent::Delta } else { AiEvent::Progress };
                queue.push_back(ai(event, &name, &payload, seqs[session]));
            }
            let original: Vec<Frame> = queue
                .iter()
                .map(|e| match e {
                    Outbound::Message(frame) => frame.clone(),
                    Outbound::Replay(_) | Outbound::Rest(_) => unreachable!(),
                })
                .collect();
            let before = outcome(&queue);
            let bytes_before: usize = queue.iter().map(Outbound::byte_len).sum();
            let freed = compact(&mut queue);
            let bytes_after: usize = queue.iter().map(Outbound::byte_len).sum();
            prop_assert_eq!(bytes_before - freed, bytes_after);
            let after = outcome(&queue);
            prop_assert_eq!(&before, &after);
            // A client cut off after any merged message recovers from its seqs what
            // follows, and ends with the same texts: nothing lost, nothing twice.
            for cut in 0..queue.len() {
                let mut resumed: VecDeque<Outbound> = VecDeque::new();
                for entry in queue.iter().take(cut + 1) {
                    let Outbound::Message(frame) = entry else { unreachable!() };
                    resumed.push_back(Outbound::Message(frame.clone()));
                }
                let processed = outcome(&resumed);
                for frame in &original {
                    let m: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
                    let session = m["sessionId"].as_str().unwrap();
                    let last = processed.get(session).map_or(0, |made| made.last);
                    if m["seq"].as_u64().unwrap() > last {
                        resumed.push_back(Outbound::Message(frame.clone()));
                    }
                }
                let resumed = outcome(&resumed);
                for (session, made) in &before {
                    prop_assert_eq!(&resumed[session].texts, &made.texts, "cut after {}", cut);
                    prop_assert_eq!(&resumed[session].progress, &made.progress);
                }
            }
            prop_assert!(after.values().all(|made| !made.disordered));
        }
    }
}
