//! Ring groups, pages, do-not-disturb and preview against the real server over TLS
//! WebSockets: every flow of docs/protocol.md's "Groups, pages and do-not-disturb",
//! with exact messages.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// Long enough for a message the server wrongly sent to arrive.
const QUIET: Duration = Duration::from_millis(150);

/// Everything a current web client declares.
const ALL: [&str; 4] = ["groups", "dnd", "preview", "page"];

/// Register `name` with extra `register` fields (e.g. groups, dnd, features).
async fn join(server: &Server, name: &str, extra: Value) -> Client {
    let mut c = server.client().await;
    let mut msg = json!({"type": "register", "name": name});
    for (k, v) in extra.as_object().unwrap() {
        msg[k] = v.clone();
    }
    c.name = name.to_string();
    let reply = c.request(msg, 1000).await;
    assert_eq!(reply["type"], "registered", "register {name}: {reply}");
    c
}

/// A member of `groups` that declares every feature.
async fn member(server: &Server, name: &str, groups: &[&str]) -> Client {
    join(server, name, json!({"groups": groups, "features": ALL})).await
}

/// `to` as a sorted list, for comparing sets.
fn set(m: &Value) -> Vec<String> {
    let mut v: Vec<String> = m["to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn ringing(group: &str, to: &[&str], id: Option<u32>) -> Value {
    let mut m = json!({"type": "ringing", "group": group, "to": to});
    if let Some(id) = id {
        m["id"] = json!(id);
    }
    m
}

fn hangup_from(from: &str, reason: &str) -> Value {
    json!({"type": "hangup", "from": from, "reason": reason})
}

fn hangup_group(group: &str, reason: &str) -> Value {
    json!({"type": "hangup", "group": group, "reason": reason})
}

/// `caller` starts a `ty` ("call" or "page") to `group` as request `id`, and each of
/// `members` receives exactly that; the reply to the request.
async fn reach(
    caller: &mut Client,
    ty: &str,
    group: &str,
    id: u32,
    members: &mut [&mut Client],
) -> Value {
    let reply = caller
        .request(json!({"type": ty, "group": group}), id)
        .await;
    let event = json!({"type": ty, "from": caller.name, "group": group});
    for m in members {
        assert_eq!(next_event(m).await, event, "{}", m.name);
    }
    reply
}

/// `door` (in no group) rings `home`, whose members `a` and `b` both have the call.
async fn door_rings_a_and_b(server: &Server) -> (Client, Client, Client) {
    let mut door = member(server, "door", &[]).await;
    let mut a = member(server, "a", &["home"]).await;
    let mut b = member(server, "b", &["home"]).await;
    reach(&mut door, "call", "home", 1, &mut [&mut a, &mut b]).await;
    (door, a, b)
}

/// The next message that is not presence.
async fn next_event(c: &mut Client) -> Value {
    loop {
        let m = c.recv().await;
        if !is_presence(&m) {
            return m;
        }
    }
}

/// Assert nothing but presence arrives for [`QUIET`].
async fn only_presence(c: &mut Client) {
    let got = futures_lite::FutureExt::or(async { Some(next_event(c).await) }, async {
        smol::Timer::after(QUIET).await;
        None
    })
    .await;
    assert_eq!(got, None, "{}: expected only presence", c.name);
}

#[test]
fn the_first_member_to_answer_gets_the_call_and_the_others_stop_ringing() {
    let server = start_server(&[]);
    run(async {
        let mut door = member(&server, "door", &[]).await;
        let mut a = member(&server, "a", &["home"]).await;
        let mut b = member(&server, "b", &["home", "up"]).await;
        // Registered last, so nothing is waiting for it.
        let mut out = join(&server, "outside", json!({"groups": ["garage"]})).await;

        let r = door
            .request(json!({"type": "call", "group": "home"}), 1)
            .await;
        assert_eq!(set(&r), ["a", "b"]);
        assert_eq!(
            (&r["type"], &r["group"], &r["id"]),
            (&json!("ringing"), &json!("home"), &json!(1))
        );
        assert_eq!(r.as_object().unwrap().len(), 4, "{r}");
        let call = json!({"type": "call", "from": "door", "group": "home"});
        assert_eq!(next_event(&mut a).await, call);
        assert_eq!(next_event(&mut b).await, call);
        // Three statuses changed: the outsider gets one list, not three updates.
        let list = out.recv().await;
        assert_eq!(list["type"], "peers", "{list}");
        let busy: Vec<&str> = list["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"] == "busy")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(busy, ["door", "a", "b"]);
        assert!(
            list["peers"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "b", "status": "busy", "groups": ["home", "up"]}))
        );
        only_presence(&mut out).await;

        b.acked(json!({"type": "accept", "to": "door"}), 2).await;
        assert_eq!(
            next_event(&mut door).await,
            json!({"type": "accept", "from": "b", "group": "home"})
        );
        assert_eq!(
            next_event(&mut a).await,
            hangup_from("door", "answered_elsewhere")
        );
        // An ordinary 1:1 call now: signals flow between door and b only.
        let sig = |to: &str| json!({"type": "signal", "to": to, "data": {"sdp": "x"}});
        b.send(sig("door")).await;
        assert_eq!(
            next_event(&mut door).await,
            json!({"type": "signal", "from": "b", "data": {"sdp": "x"}})
        );
        door.refused(sig("a"), 3, "no_call").await;
        door.refused(json!({"type": "hangup", "group": "home"}), 4, "no_call")
            .await;
        a.refused(json!({"type": "accept", "to": "door"}), 5, "no_call")
            .await;
        door.send(json!({"type": "hangup", "to": "b"})).await;
        assert_eq!(next_event(&mut b).await, hangup_from("door", "ended"));
    });
}

#[test]
fn declines_shrink_the_ring_and_the_last_decline_ends_it() {
    let server = start_server(&[]);
    run(async {
        let (mut door, mut a, mut b) = door_rings_a_and_b(&server).await;
        a.acked(json!({"type": "hangup", "to": "door", "reason": "no"}), 2)
            .await;
        assert_eq!(next_event(&mut door).await, ringing("home", &["b"], None));
        // The caller cannot end a group ring with `to`.
        door.refused(json!({"type": "hangup", "to": "b"}), 3, "no_call")
            .await;
        b.send(json!({"type": "hangup", "to": "door", "reason": "away"}))
            .await;
        assert_eq!(next_event(&mut door).await, hangup_group("home", "away"));
        only_presence(&mut a).await;
        // Idle again: door can ring the group once more, and a last decline without a
        // reason says "ended".
        door.request(json!({"type": "call", "group": "home"}), 4)
            .await;
        a.send(json!({"type": "hangup", "to": "door"})).await;
        next_event(&mut door).await;
        b.send(json!({"type": "hangup", "to": "door"})).await;
        assert_eq!(next_event(&mut door).await, hangup_group("home", "ended"));
    });
}

#[test]
fn the_caller_cancels_and_an_unanswered_ring_times_out() {
    let server = start_server(&["--ring-timeout", "0.5"]);
    run(async {
        let (mut door, mut a, mut b) = door_rings_a_and_b(&server).await;
        door.refused(json!({"type": "hangup", "group": "other"}), 2, "no_call")
            .await;
        door.acked(
            json!({"type": "hangup", "group": "home", "reason": "cancel"}),
            3,
        )
        .await;
        assert_eq!(next_event(&mut a).await, hangup_from("door", "cancel"));
        assert_eq!(next_event(&mut b).await, hangup_from("door", "cancel"));

        reach(&mut door, "call", "home", 4, &mut [&mut a, &mut b]).await;
        // A decline does not restart the timer.
        a.send(json!({"type": "hangup", "to": "door"})).await;
        assert_eq!(next_event(&mut door).await, ringing("home", &["b"], None));
        assert_eq!(next_event(&mut b).await, hangup_from("door", "timeout"));
        assert_eq!(next_event(&mut door).await, hangup_group("home", "timeout"));
        only_presence(&mut a).await;
    });
}

#[test]
fn disconnects_end_rings_and_pages_for_the_others() {
    let server = start_server(&[]);
    run(async {
        let mut a = member(&server, "a", &["home"]).await;
        let mut b = member(&server, "b", &["home"]).await;
        let mut c = member(&server, "c", &["home"]).await;
        // The caller goes: every member hears "disconnected".
        let mut door = member(&server, "door", &[]).await;
        reach(&mut door, "call", "home", 1, &mut [&mut a, &mut b, &mut c]).await;
        door.close().await;
        for m in [&mut a, &mut b, &mut c] {
            assert_eq!(next_event(m).await, hangup_from("door", "disconnected"));
        }
        // A member goes: the caller hears who still rings; the last one's leaving ends it.
        reach(&mut a, "call", "home", 2, &mut [&mut b, &mut c]).await;
        b.close().await;
        assert_eq!(next_event(&mut a).await, ringing("home", &["c"], None));
        c.close().await;
        assert_eq!(
            next_event(&mut a).await,
            hangup_group("home", "disconnected")
        );

        // Pages: the pager goes, then a listener goes.
        let mut l1 = member(&server, "l1", &["home"]).await;
        let mut l2 = member(&server, "l2", &["home"]).await;
        reach(&mut a, "page", "home", 3, &mut [&mut l1, &mut l2]).await;
        a.close().await;
        assert_eq!(next_event(&mut l1).await, hangup_from("a", "disconnected"));
        assert_eq!(next_event(&mut l2).await, hangup_from("a", "disconnected"));
        let mut p = member(&server, "p", &[]).await;
        let r = reach(&mut p, "page", "home", 4, &mut [&mut l1]).await;
        assert_eq!(set(&r), ["l1", "l2"]);
        l2.close().await;
        assert_eq!(
            next_event(&mut p).await,
            json!({"type": "paging", "group": "home", "to": ["l1"]})
        );
        l1.close().await;
        assert_eq!(
            next_event(&mut p).await,
            hangup_group("home", "disconnected")
        );
    });
}

#[test]
fn do_not_disturb_refuses_calls_and_is_skipped_by_rings_and_pages() {
    let server = start_server(&[]);
    run(async {
        let mut door = member(&server, "door", &[]).await;
        let mut night = join(
            &server,
            "night",
            json!({"groups": ["home"], "dnd": true, "features": ALL}),
        )
        .await;
        let mut day = member(&server, "day", &["home"]).await;
        // door saw night arrive as dnd.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let m = door.recv().await;
            seen.push(m);
        }
        assert_eq!(
            seen[0],
            json!({"type": "peer", "name": "night", "status": "dnd", "groups": ["home"]})
        );
        door.refused(json!({"type": "call", "to": "night"}), 1, "dnd")
            .await;
        // The ring skips night; so does a page.
        let r = door
            .request(json!({"type": "call", "group": "home"}), 2)
            .await;
        assert_eq!(r, ringing("home", &["day"], Some(2)));
        next_event(&mut day).await;
        only_presence(&mut night).await;
        // Busy day, dnd night: nobody, and why.
        let mut other = member(&server, "other", &[]).await;
        let e = other
            .request(json!({"type": "page", "group": "home"}), 3)
            .await;
        assert_eq!(
            e,
            json!({"type": "error", "id": 3, "code": "no_one_available",
                   "message": "no one in the group is available",
                   "busy": ["day"], "dnd": ["night"]})
        );
        // DND may call out, and turning it off is announced.
        door.send(json!({"type": "hangup", "group": "home"})).await;
        next_event(&mut day).await;
        night.acked(json!({"type": "call", "to": "other"}), 4).await;
        next_event(&mut other).await;
        other.send(json!({"type": "hangup", "to": "night"})).await;
        next_event(&mut night).await;
        night
            .acked(json!({"type": "status", "dnd": false}), 5)
            .await;
        loop {
            let m = door.recv().await;
            if m["name"] == "night" && m["status"] == "online" {
                break;
            }
        }
        let e = night.request(json!({"type": "status"}), 6).await;
        assert_bad_message(&e, Some(6));
    });
}

#[test]
fn preview_signals_flow_while_ringing_only_to_callees_that_declared_it() {
    let server = start_server(&[]);
    run(async {
        let mut door = member(&server, "door", &[]).await;
        let mut new = member(&server, "new", &["home"]).await;
        let mut old = join(&server, "old", json!({"groups": ["home"]})).await;
        let sig = |to: &str| json!({"type": "signal", "to": to, "data": {"sdp": "offer"}});
        // 1:1.
        door.request(json!({"type": "call", "to": "new"}), 1).await;
        next_event(&mut new).await;
        door.acked(sig("new"), 2).await;
        assert_eq!(
            next_event(&mut new).await,
            json!({"type": "signal", "from": "door", "data": {"sdp": "offer"}})
        );
        new.acked(sig("door"), 3).await;
        next_event(&mut door).await;
        door.send(json!({"type": "hangup", "to": "new"})).await;
        next_event(&mut new).await;
        door.request(json!({"type": "call", "to": "old"}), 4).await;
        next_event(&mut old).await;
        door.refused(sig("old"), 5, "no_call").await;
        door.send(json!({"type": "hangup", "to": "old"})).await;
        next_event(&mut old).await;
        // Group.
        let r = door
            .request(json!({"type": "call", "group": "home"}), 6)
            .await;
        assert_eq!(set(&r), ["new", "old"]);
        next_event(&mut new).await;
        next_event(&mut old).await;
        door.acked(sig("new"), 7).await;
        next_event(&mut new).await;
        door.refused(sig("old"), 8, "no_call").await;
        new.refused(sig("old"), 9, "no_call").await;
        only_presence(&mut old).await;
    });
}

#[test]
fn a_page_to_everyone_reaches_idle_page_stations_and_listeners_cannot_talk_to_each_other() {
    let server = start_server(&["--page-timeout", "1"]);
    run(async {
        let mut pager = member(&server, "pager", &[]).await;
        let mut l1 = member(&server, "l1", &[]).await;
        let mut l2 = member(&server, "l2", &["x"]).await;
        let mut legacy = join(&server, "legacy", json!({})).await;
        let mut busy1 = member(&server, "busy1", &[]).await;
        let mut busy2 = member(&server, "busy2", &[]).await;
        busy1
            .request(json!({"type": "call", "to": "busy2"}), 1)
            .await;
        next_event(&mut busy2).await;

        let r = pager
            .request(json!({"type": "page", "group": "*"}), 2)
            .await;
        assert_eq!(r["type"], "paging");
        assert_eq!(r["group"], "*");
        assert_eq!(r["id"], 2);
        assert_eq!(set(&r), ["l1", "l2"]);
        let page = json!({"type": "page", "from": "pager", "group": "*"});
        assert_eq!(next_event(&mut l1).await, page);
        assert_eq!(next_event(&mut l2).await, page);
        only_presence(&mut legacy).await;
        only_presence(&mut busy2).await;
        // Pages never interrupt: the paged are busy.
        busy2
            .refused(json!({"type": "call", "to": "l1"}), 3, "busy")
            .await;
        let sig = |to: &str| json!({"type": "signal", "to": to, "data": 1});
        pager.acked(sig("l1"), 4).await;
        next_event(&mut l1).await;
        l2.acked(sig("pager"), 5).await;
        next_event(&mut pager).await;
        l1.refused(sig("l2"), 6, "no_call").await;
        // While the page lasts, `to` from the pager is no_call.
        pager
            .refused(json!({"type": "hangup", "to": "l1"}), 7, "no_call")
            .await;
        // l1 leaves; the timer ends the page for l2 and the pager.
        l1.send(json!({"type": "hangup", "to": "pager"})).await;
        assert_eq!(
            next_event(&mut pager).await,
            json!({"type": "paging", "group": "*", "to": ["l2"]})
        );
        assert_eq!(next_event(&mut l2).await, hangup_from("pager", "timeout"));
        assert_eq!(next_event(&mut pager).await, hangup_group("*", "timeout"));
        // The pager ends a page itself.
        reach(&mut pager, "page", "x", 8, &mut [&mut l2]).await;
        pager
            .acked(json!({"type": "hangup", "group": "x", "reason": "done"}), 9)
            .await;
        assert_eq!(next_event(&mut l2).await, hangup_from("pager", "done"));
        only_presence(&mut l1).await;
    });
}

#[test]
fn bad_groups_are_group_invalid_and_the_checks_run_in_order() {
    let server = start_server(&["--max-peers", "2"]);
    run(async {
        let mut a = member(&server, "a", &["home"]).await;
        let mut c = server.client().await;
        for (groups, code) in [
            (json!(["*"]), "group_invalid"),
            (json!("home"), "group_invalid"),
            (json!([1]), "group_invalid"),
            (
                json!(["1", "2", "3", "4", "5", "6", "7", "8", "9"]),
                "group_invalid",
            ),
            (json!([" pad"]), "group_invalid"),
        ] {
            let reg = json!({"type": "register", "name": "b", "groups": groups});
            c.refused(reg, 1, code).await;
        }
        // name_invalid comes first, name_taken after.
        let reg = json!({"type": "register", "name": "", "groups": ["*"]});
        c.refused(reg, 2, "name_invalid").await;
        let reg = json!({"type": "register", "name": "a", "groups": ["*"]});
        c.refused(reg, 3, "group_invalid").await;
        let reg = json!({"type": "register", "name": "a", "groups": ["ok"]});
        c.refused(reg, 4, "name_taken").await;
        let reg = json!({"type": "register", "name": "b", "dnd": "yes"});
        assert_bad_message(&c.request(reg, 5).await, Some(5));
        let reg = json!({"type": "register", "name": "b", "features": "page"});
        assert_bad_message(&c.request(reg, 6).await, Some(6));
        // Duplicates collapse: eight distinct names in nine entries are fine.
        let groups = json!(["1", "2", "3", "4", "5", "6", "7", "8", "1"]);
        let reg = json!({"type": "register", "name": "b", "groups": groups});
        let r = c.request(reg, 7).await;
        assert_eq!(r["groups"], json!(["1", "2", "3", "4", "5", "6", "7", "8"]));
        // A group call needs exactly one of to and group, and a valid group.
        let e = a
            .request(json!({"type": "call", "to": "b", "group": "x"}), 8)
            .await;
        assert_bad_message(&e, Some(8));
        a.refused(json!({"type": "call", "group": " x"}), 9, "group_invalid")
            .await;
        a.refused(json!({"type": "page", "group": ""}), 10, "group_invalid")
            .await;
        let e = a
            .request(json!({"type": "call", "group": "none"}), 11)
            .await;
        assert_eq!(
            e,
            json!({"type": "error", "id": 11, "code": "no_one_available",
                   "message": "no one in the group is available", "busy": [], "dnd": []})
        );
    });
}

#[test]
fn a_station_that_keeps_starting_rings_and_pages_is_rate_limited_and_others_are_not() {
    let server = start_server(&[]);
    run(async {
        let mut noisy = member(&server, "noisy", &[]).await;
        let mut quiet = member(&server, "quiet", &[]).await;
        let mut l = member(&server, "l", &["home"]).await;
        for i in 0..5 {
            let r = noisy
                .request(json!({"type": "page", "group": "home"}), 2 * i)
                .await;
            assert_eq!(r["type"], "paging", "{r}");
            next_event(&mut l).await;
            noisy
                .request(json!({"type": "hangup", "group": "home"}), 2 * i + 1)
                .await;
            next_event(&mut l).await;
        }
        noisy
            .refused(json!({"type": "call", "group": "home"}), 20, "rate_limited")
            .await;
        only_presence(&mut l).await;
        let r = quiet
            .request(json!({"type": "call", "group": "home"}), 21)
            .await;
        assert_eq!(r, ringing("home", &["l"], Some(21)));
    });
}
