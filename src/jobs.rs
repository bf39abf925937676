//! The state of each session's AI jobs, built from the `ai_*` notifications the host
//! makes: what a subscriber that arrives late (a reloaded page, a client whose
//! recovery failed) sees first, as a `jobs_snapshot`, before the live tail.
//!
//! A job is named by the `jobId` of the notifications' payloads; notifications without
//! one belong to the session's implicit job. With the memory broker the state lives
//! here ([`JobStore`]), updated under the channel lock that sequences the publication;
//! with Redis the same rules run in the publish script (see `broker::redis`), and
//! [`Job`] only renders what Redis returns.

use crate::config::JobsConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{self, AiEvent};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobStatus {
    Running,
    Complete,
    Error,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Complete => "complete",
            JobStatus::Error => "error",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "running" => JobStatus::Running,
            "complete" => JobStatus::Complete,
            "error" => JobStatus::Error,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What one host notification does to its job, read from its payload once, when the
/// host makes it (so a bad `jobId` is the host's error, not a publication dropped).
#[derive(Clone, Debug)]
pub(crate) struct JobUpdate {
    pub event: AiEvent,
    pub job_id: Option<String>,
    /// The payload object, as JSON text.
    pub payload: String,
    /// An `ai_delta`'s text; empty otherwise.
    pub text: String,
}

impl JobUpdate {
    /// `payload_json` has been checked to be a JSON object.
    pub fn parse(event: AiEvent, payload_json: &str) -> Result<JobUpdate> {
        #[derive(serde::Deserialize)]
        struct Keys {
            #[serde(rename = "jobId")]
            job_id: Option<serde_json::Value>,
            text: Option<serde_json::Value>,
        }
        let what = event.payload_key();
        let keys: Keys =
            serde_json::from_str(payload_json).map_err(|e| Error::invalid_json(what, e))?;
        let invalid = |m: String| Error::new(ErrorKind::InvalidArgument, m);
        let job_id = match keys.job_id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(id)) => {
                protocol::check_name("jobId", &id)?;
                Some(id)
            }
            Some(_) => return Err(invalid(format!("{what}: \"jobId\" must be a string"))),
        };
        let text = match (event, keys.text) {
            (AiEvent::Delta, Some(serde_json::Value::String(text))) => text,
            (AiEvent::Delta, _) => {
                return Err(invalid(
                    "delta: \"text\" must be a string ({\"jobId\":…,\"text\":\"…\"})".into(),
                ))
            }
            _ => String::new(),
        };
        Ok(JobUpdate {
            event,
            job_id,
            payload: payload_json.trim().to_string(),
            text,
        })
    }

    /// The name the publish script and the snapshot use for the event.
    pub fn kind(&self) -> &'static str {
        match self.event {
            AiEvent::Start => "start",
            AiEvent::Progress => "progress",
            AiEvent::Delta => "delta",
            AiEvent::Complete => "complete",
            AiEvent::Error => "error",
            AiEvent::Cancelled => "cancelled",
        }
    }
}

/// One job's state. JSON payloads are kept as the host's text.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub id: Option<String>,
    pub status: JobStatus,
    pub task: Option<String>,
    pub progress: Option<String>,
    /// The text of its `ai_delta`s, concatenated.
    pub text: String,
    /// The text reached `jobs.max_text_bytes`; later deltas were not kept.
    pub truncated: bool,
    /// The payload of its `ai_complete`, `ai_error` or `ai_cancelled`.
    pub outcome: Option<String>,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
}

impl Job {
    pub fn new(id: Option<String>, now_ms: u64) -> Job {
        Job {
            id,
            status: JobStatus::Running,
            task: None,
            progress: None,
            text: String::new(),
            truncated: false,
            outcome: None,
            started_ms: now_ms,
            ended_ms: None,
        }
    }

    fn apply(&mut self, update: &JobUpdate, now_ms: u64, max_text: usize) {
        let end = |job: &mut Job, status| {
            job.status = status;
            job.outcome = Some(update.payload.clone());
            job.ended_ms = Some(now_ms);
        };
        match update.event {
            AiEvent::Start => {
                *self = Job::new(self.id.take(), now_ms);
                self.task = Some(update.payload.clone());
            }
            AiEvent::Progress => self.progress = Some(update.payload.clone()),
            AiEvent::Delta => {
                let room = max_text.saturating_sub(self.text.len());
                if update.text.len() <= room {
                    self.text.push_str(&update.text);
                } else {
                    let mut cut = room;
                    while !update.text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    self.text.push_str(&update.text[..cut]);
                    self.truncated = true;
                }
            }
            AiEvent::Complete => end(self, JobStatus::Complete),
            AiEvent::Error => end(self, JobStatus::Error),
            AiEvent::Cancelled => end(self, JobStatus::Cancelled),
        }
    }

    /// Roughly what it holds in memory.
    fn bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        128 + opt(&self.id)
            + opt(&self.task)
            + opt(&self.progress)
            + opt(&self.outcome)
            + self.text.len()
    }

    fn expired(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.ended_ms
            .is_some_and(|ended| ended.saturating_add(ttl_ms) <= now_ms)
    }

    /// `{"jobId","state","task","progress","text","result"|"error"|"cancelled",
    /// "startedAt","endedAt"}` (and `"truncated":true` when the text was cut).
    fn write_json(&self, out: &mut String) {
        let string = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let raw = |s: &Option<String>| s.as_deref().unwrap_or("null").to_string();
        out.push_str("{\"jobId\":");
        out.push_str(&self.id.as_deref().map_or("null".into(), string));
        out.push_str(",\"state\":\"");
        out.push_str(self.status.as_str());
        out.push_str("\",\"task\":");
        out.push_str(&raw(&self.task));
        out.push_str(",\"progress\":");
        out.push_str(&raw(&self.progress));
        out.push_str(",\"text\":");
        out.push_str(&string(&self.text));
        if self.truncated {
            out.push_str(",\"truncated\":true");
        }
        if self.outcome.is_some() {
            out.push_str(match self.status {
                JobStatus::Error => ",\"error\":",
                JobStatus::Cancelled => ",\"cancelled\":",
                _ => ",\"result\":",
            });
            out.push_str(&raw(&self.outcome));
        }
        out.push_str(",\"startedAt\":\"");
        out.push_str(&crate::time::format_iso_millis(self.started_ms));
        out.push_str("\",\"endedAt\":");
        match self.ended_ms {
            Some(ms) => {
                out.push('"');
                out.push_str(&crate::time::format_iso_millis(ms));
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push('}');
    }
}

/// The jobs of a session as a JSON array, oldest first, leaving out the oldest when
/// they would take more than `max_bytes` (a snapshot must fit a client's budget);
/// `None` when the session has no job.
pub(crate) fn jobs_json<'a>(
    jobs: impl DoubleEndedIterator<Item = &'a Job>,
    max_bytes: usize,
) -> Option<String> {
    let mut rendered = Vec::new();
    let mut total = 0;
    for job in jobs.rev() {
        let mut text = String::new();
        job.write_json(&mut text);
        total += text.len() + 1;
        if total > max_bytes && !rendered.is_empty() {
            break;
        }
        rendered.push(text);
    }
    if rendered.is_empty() {
        return None;
    }
    rendered.reverse();
    Some(format!("[{}]", rendered.join(",")))
}

/// Every session's jobs on this node (the memory broker's), bounded as configured.
pub(crate) struct JobStore {
    sessions: HashMap<String, Vec<Job>>,
    bytes: usize,
    config: JobsConfig,
}

impl JobStore {
    pub fn new(config: JobsConfig) -> JobStore {
        JobStore {
            sessions: HashMap::new(),
            bytes: 0,
            config,
        }
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn apply(&mut self, session: &str, update: &JobUpdate, now_ms: u64) {
        let max_jobs = self.config.max_per_session;
        let jobs = self.sessions.entry(session.to_string()).or_default();
        let at = match jobs.iter().position(|j| j.id == update.job_id) {
            Some(at) => at,
            None => {
                if jobs.len() >= max_jobs {
                    let victim = oldest_ended(jobs).unwrap_or(0);
                    self.bytes -= jobs.remove(victim).bytes();
                }
                jobs.push(Job::new(update.job_id.clone(), now_ms));
                self.bytes += jobs[jobs.len() - 1].bytes();
                jobs.len() - 1
            }
        };
        let job = &mut jobs[at];
        let before = job.bytes();
        job.apply(update, now_ms, self.config.max_text_bytes);
        self.bytes = self.bytes + job.bytes() - before;
        while self.bytes > self.config.max_bytes && self.evict_one() {}
    }

    /// Drops the job that ended first (or, if none ended, the one started first)
    /// across all sessions; false when there is none.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .sessions
            .iter()
            .flat_map(|(session, jobs)| {
                jobs.iter().enumerate().map(move |(i, job)| {
                    (
                        (
                            job.ended_ms.is_none(),
                            job.ended_ms.unwrap_or(job.started_ms),
                        ),
                        session,
                        i,
                    )
                })
            })
            .min_by_key(|(key, _, _)| *key)
            .map(|(_, session, i)| (session.clone(), i));
        let Some((session, i)) = victim else {
            return false;
        };
        let jobs = self.sessions.get_mut(&session).expect("found above");
        self.bytes -= jobs.remove(i).bytes();
        if jobs.is_empty() {
            self.sessions.remove(&session);
        }
        true
    }

    /// The session's jobs as a JSON array, or `None` without any.
    pub fn snapshot_json(&self, session: &str, max_bytes: usize) -> Option<String> {
        jobs_json(self.sessions.get(session)?.iter(), max_bytes)
    }

    /// Forgets jobs that ended `jobs.ttl_ms` ago or more.
    pub fn expire(&mut self, now_ms: u64) {
        let ttl = self.config.ttl_ms;
        let mut freed = 0;
        self.sessions.retain(|_, jobs| {
            jobs.retain(|job| {
                let expired = job.expired(now_ms, ttl);
                if expired {
                    freed += job.bytes();
                }
                !expired
            });
            !jobs.is_empty()
        });
        self.bytes -= freed;
    }
}

fn oldest_ended(jobs: &[Job]) -> Option<usize> {
    jobs.iter()
        .enumerate()
        .filter_map(|(i, job)| job.ended_ms.map(|ended| (ended, i)))
        .min()
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(event: AiEvent, payload: &str) -> JobUpdate {
        JobUpdate::parse(event, payload).unwrap()
    }

    fn snapshot(store: &JobStore, session: &str) -> serde_json::Value {
        serde_json::from_str(&store.snapshot_json(session, usize::MAX).unwrap()).unwrap()
    }

    #[test]
    fn a_job_runs_streams_and_ends() {
        let mut store = JobStore::new(JobsConfig::default());
        store.apply("s", &update(AiEvent::Start, r#"{"jobId":"a","p":1}"#), 10);
        store.apply(
            "s",
            &update(AiEvent::Delta, r#"{"jobId":"a","text":"Hel"}"#),
            11,
        );
        store.apply(
            "s",
            &update(AiEvent::Delta, r#"{"jobId":"a","text":"lo"}"#),
            12,
        );
        store.apply(
            "s",
            &update(AiEvent::Progress, r#"{"jobId":"a","pct":5}"#),
            13,
        );
        store.apply("s", &update(AiEvent::Progress, r#"{"pct":9}"#), 13);
        let jobs = snapshot(&store, "s");
        assert_eq!(jobs[0]["jobId"], "a");
        assert_eq!(jobs[0]["state"], "running");
        assert_eq!(jobs[0]["text"], "Hello");
        assert_eq!(jobs[0]["progress"]["pct"], 5);
        assert_eq!(
            jobs[1]["jobId"],
            serde_json::Value::Null,
            "the implicit job"
        );
        store.apply("s", &update(AiEvent::Cancelled, r#"{"jobId":"a"}"#), 20);
        let jobs = snapshot(&store, "s");
        assert_eq!(jobs[0]["state"], "cancelled");
        assert!(jobs[0]["endedAt"].is_string());
        store.expire(20 + JobsConfig::default().ttl_ms);
        let jobs = snapshot(&store, "s");
        assert_eq!(jobs.as_array().unwrap().len(), 1, "the ended job expired");
        assert!(store.snapshot_json("other", 1000).is_none());
    }

    #[test]
    fn bounds_hold() {
        let mut store = JobStore::new(JobsConfig {
            max_per_session: 2,
            max_text_bytes: 4,
            max_bytes: 2000,
            ..JobsConfig::default()
        });
        store.apply(
            "s",
            &update(AiEvent::Delta, r#"{"jobId":"a","text":"ab€"}"#),
            1,
        );
        assert_eq!(
            snapshot(&store, "s")[0]["text"],
            "ab",
            "cut on a char boundary"
        );
        assert_eq!(snapshot(&store, "s")[0]["truncated"], true);
        store.apply("s", &update(AiEvent::Complete, r#"{"jobId":"a"}"#), 2);
        store.apply("s", &update(AiEvent::Start, r#"{"jobId":"b"}"#), 3);
        store.apply("s", &update(AiEvent::Start, r#"{"jobId":"c"}"#), 4);
        let ids: Vec<_> = snapshot(&store, "s")
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["jobId"].clone())
            .collect();
        assert_eq!(ids, ["b", "c"], "the ended job went first");
        let big = "x".repeat(1500);
        for n in 0..5 {
            let payload = format!(r#"{{"jobId":"j{n}","pad":"{big}"}}"#);
            store.apply(&format!("t{n}"), &update(AiEvent::Start, &payload), 10 + n);
        }
        assert!(store.bytes() <= 2000, "{}", store.bytes());
        assert!(
            store.snapshot_json("t4", usize::MAX).is_some(),
            "newest kept"
        );
    }

    #[test]
    fn bad_updates_are_refused() {
        assert!(JobUpdate::parse(AiEvent::Delta, r#"{"jobId":"a"}"#).is_err());
        assert!(JobUpdate::parse(AiEvent::Start, r#"{"jobId":7}"#).is_err());
        assert!(JobUpdate::parse(AiEvent::Start, r#"{"jobId":""}"#).is_err());
        assert!(JobUpdate::parse(AiEvent::Start, r#"{}"#).is_ok());
    }
}
