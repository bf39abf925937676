//! Finding 4: a full channel table fails loudly, and clients cannot lock the host out of
//! new channels.

use crate::child::Child;
use crate::outcome::Outcome;
use crate::ws::{self, Next};
use serde_json::{json, Value};
use std::time::Duration;

/// Finding 4: a small channel table, so that filling it is quick.
const MAX_CHANNELS: u64 = 100;
/// Clients may create channels up to 90% of `max_channels`; the rest is the host's.
const CLIENT_CHANNELS_MAX: u64 = MAX_CHANNELS * 9 / 10;
/// Clients trying to fill the table, each up to CHANNELS_PER_CLIENT new channels
/// (inside the default rate-limit burst of 100).
const FILLING_CLIENTS: usize = 3;
const CHANNELS_PER_CLIENT: usize = 50;
/// New channels the host tries once clients are refused: more than the table can hold.
const HOST_FILL_ATTEMPTS: usize = 150;

pub async fn channel_table_full() -> Outcome {
    let mut o = Outcome::default();
    let Some(mut child) = o.step(Child::serve(json!({ "max_channels": MAX_CHANNELS })).await)
    else {
        return o;
    };
    // Clients subscribe to new channels until refused; they stay connected so their
    // channels stay in the table.
    let mut fillers = Vec::new();
    let (mut created, mut refusal) = (0u64, None::<Value>);
    for c in 0..FILLING_CLIENTS {
        let Some((mut client, _)) = o.step(ws::connect(child.port, "").await) else {
            return o;
        };
        for i in 0..CHANNELS_PER_CLIENT {
            let Some(reply) =
                o.step(ws::subscribe(&mut client, &format!(r#""channel":"c{c}-{i}""#)).await)
            else {
                return o;
            };
            if reply["type"] == "subscribed" {
                created += 1;
            } else {
                refusal = Some(reply["error"]["code"].clone());
                break;
            }
        }
        fillers.push(client);
    }
    let Some(stats) = o.step(child.stats().await) else {
        return o;
    };
    let table_after_clients = stats["channels"].as_u64().unwrap_or(0);
    o.fig("client_channels", created);
    o.fig(
        "client_refusal",
        refusal.map_or("none".into(), |c| c.to_string()),
    );
    o.fig(
        "table_after_clients",
        format!("{table_after_clients}/{MAX_CHANNELS}"),
    );
    o.expect(
        created <= CLIENT_CHANNELS_MAX,
        format!(
            "clients created {created} channels (at most {CLIENT_CHANNELS_MAX} of {MAX_CHANNELS})"
        ),
    );

    // The host can still reach a new session, and its subscriber gets the notification.
    let Some(first) = o.step(child.cmd(r#"notify start reserved {"taskId":"r"}"#).await) else {
        return o;
    };
    o.fig(
        "host_notify_new_session",
        first.split(' ').take(2).collect::<Vec<_>>().join(" "),
    );
    o.expect(
        first == "ok",
        format!("host notify to a new session: {first}"),
    );
    let Some((mut subscriber, _)) = o.step(ws::connect(child.port, "").await) else {
        return o;
    };
    let Some(reply) = o.step(ws::subscribe(&mut subscriber, r#""sessionId":"reserved""#).await)
    else {
        return o;
    };
    o.expect(
        reply["type"] == "subscribed",
        format!("subscribe to the host's session: {reply}"),
    );
    let Some(second) = o.step(
        child
            .cmd(r#"notify progress reserved {"taskId":"r","percent":50}"#)
            .await,
    ) else {
        return o;
    };
    // The session's job state comes first (the host started a job on it), then the tail.
    let mut delivered = false;
    for _ in 0..2 {
        match ws::next(&mut subscriber, Duration::from_secs(3)).await {
            Next::Json(m) if m["type"] == "jobs_snapshot" => continue,
            Next::Json(m) => delivered = m["type"] == "ai_progress",
            _ => {}
        }
        break;
    }
    o.fig("subscriber_got_notify", delivered);
    o.expect(
        second == "ok" && delivered,
        format!("second notify {second:?}, delivered to its subscriber: {delivered}"),
    );

    // The host fills the rest: the publish that finds the table full fails with `limit`.
    let (mut accepted, mut first_error) = (0usize, None::<String>);
    for i in 0..HOST_FILL_ATTEMPTS {
        let Some(answer) = o.step(child.cmd(&format!(r#"publish fill-{i} {{"i":{i}}}"#)).await)
        else {
            return o;
        };
        if answer == "ok" {
            accepted += 1;
        } else {
            first_error = Some(answer);
            break;
        }
    }
    let Some(stats) = o.step(child.stats().await) else {
        return o;
    };
    let table = stats["channels"].as_u64().unwrap_or(0);
    o.fig("host_fill_accepted", accepted);
    o.fig("table_after_host", format!("{table}/{MAX_CHANNELS}"));
    o.fig(
        "channelsRejected",
        stats["channelsRejected"].as_u64().unwrap_or(0),
    );
    match &first_error {
        Some(e) => o.expect(
            e.starts_with("err limit "),
            format!("publish to a new channel on a full table: {e:?} (expected err limit …)"),
        ),
        None => o.fail(format!(
            "{HOST_FILL_ATTEMPTS} publishes to new channels all returned ok with a table of \
             {MAX_CHANNELS} ({table} channels, the rest dropped)"
        )),
    }
    // Room the host had: the table less the clients' channels and its own session.
    let room = MAX_CHANNELS.saturating_sub(table_after_clients + 1);
    o.expect(
        accepted as u64 <= room,
        format!("the host's publishes to new channels were accepted {accepted} times with room for {room}"),
    );
    let Some(last) = o.step(child.cmd(r#"notify start another {"taskId":"a"}"#).await) else {
        return o;
    };
    o.fig(
        "notify_on_full_table",
        last.split(' ').take(2).collect::<Vec<_>>().join(" "),
    );
    o.expect(
        last.starts_with("err limit "),
        format!("notify to a new session on a full table: {last:?} (expected err limit …)"),
    );
    drop(fillers);
    crate::child::finish(&mut o, child).await;
    o
}
