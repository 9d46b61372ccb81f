//! Protocol v1 against the real server over TLS WebSockets.

mod support;

use serde_json::json;
use support::*;

#[test]
fn call_accept_signal_hangup() {
    let server = start_server(&[]);
    run(async {
        let (mut a, _) = server.register("door").await;
        let (b, reg) = server.register("주방").await;
        assert_eq!(reg["peers"], json!([{"name": "door", "status": "online"}]));
        assert_eq!(reg["protocol"], 1);
        assert!(reg["token"].as_str().unwrap().len() >= 22);
        assert_eq!(
            a.recv().await,
            json!({"type": "peer", "name": "주방", "status": "online"})
        );
        let (mut a, mut b) = (a, b);
        a.send(json!({"type": "call", "to": "주방"})).await;
        assert_eq!(b.recv().await, json!({"type": "call", "from": "door"}));
        b.send(json!({"type": "accept", "to": "door", "from": "evil"}))
            .await;
        assert_eq!(
            a.recv_type("accept").await,
            json!({"type": "accept", "from": "주방"})
        );
        let sdp = r#"{"sdp":"v=0\r\n","type":"offer"}"#;
        a.send_text(&format!(r#"{{"type":"signal","to":"주방","data":{sdp}}}"#))
            .await;
        let got = b.recv_type("signal").await;
        assert_eq!(got["from"], "door");
        a.send(json!({"type": "hangup", "to": "주방"})).await;
        assert_eq!(
            b.recv_type("hangup").await,
            json!({"type": "hangup", "from": "door", "reason": "ended"})
        );
    });
}
