//! Routing against a real Redis Cluster whose slots move while an endpoint is connected.

use std::process::Command;

use ferry_connectors::redis::{RedisEndpoint, Value, cmd, key_slot};
use ferry_testkit::{RedisCluster, redis_cli_bin};
use redis::Commands;

fn node_id(port: u16) -> String {
    let out = Command::new(redis_cli_bin())
        .args(["-p", &port.to_string(), "CLUSTER", "MYID"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn moved_slots_are_followed_after_a_reshard() {
    let cluster = RedisCluster::start();
    let endpoint = RedisEndpoint::connect(&cluster.url(), None).await.unwrap();
    assert!(endpoint.is_cluster());
    assert_eq!(endpoint.masters().len(), 3);
    // Keys on every master, written through the endpoint.
    let keys: Vec<Vec<u8>> = (0..600).map(|i| format!("k:{i}").into_bytes()).collect();
    let writes = keys
        .iter()
        .map(|k| (k.clone(), cmd("SET").arg(k).arg("v1").clone()))
        .collect();
    for r in endpoint.run(writes).await.unwrap() {
        assert_eq!(r.unwrap(), Value::Okay);
    }
    // Move 2000 slots (with their keys) from the first master to the second behind its back.
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    let status = Command::new(redis_cli_bin())
        .args(["--cluster", "reshard", &format!("127.0.0.1:{}", ports[0])])
        .args([
            "--cluster-from",
            &node_id(ports[0]),
            "--cluster-to",
            &node_id(ports[1]),
        ])
        .args(["--cluster-slots", "2000", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The endpoint's slot map is stale now: MOVED replies must be followed.
    let writes = keys
        .iter()
        .map(|k| (k.clone(), cmd("SET").arg(k).arg("v2").clone()))
        .collect();
    for r in endpoint.run(writes).await.unwrap() {
        assert_eq!(r.unwrap(), Value::Okay);
    }
    let mut check = cluster.client().get_connection().unwrap();
    for k in &keys {
        let v: String = check.get(k).unwrap();
        assert_eq!(v, "v2", "slot {}", key_slot(k));
    }
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let server = ferry_testkit::RedisServer::start_with(&["--requirepass", "right"]);
    let err = RedisEndpoint::connect(
        &format!("redis://:hunter2x@127.0.0.1:{}/0", server.port()),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ferry_connectors::redis::ConnError::Auth { .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains("hunter2x"),
        "the password is redacted: {err}"
    );
    let ok = RedisEndpoint::connect(&server.url(), Some("right")).await;
    assert!(ok.is_ok());
}
