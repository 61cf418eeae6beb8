//! Deleting a source only if it is unchanged since its copy, and moves on one server, on a real
//! server: an application's write between the copy and the delete is never destroyed.

use ferry_connectors::redis::{
    DeleteIfUnchanged, Moved, RedisEndpoint, SourceDelete, Witness, delete_if_unchanged,
    move_on_server, source_digest,
};
use ferry_testkit::RedisServer;
use redis::Commands;

fn dump(c: &mut redis::Connection, key: &str) -> Vec<u8> {
    redis::cmd("DUMP").arg(key).query(c).unwrap()
}

fn expire_at(c: &mut redis::Connection, key: &str) -> Option<i64> {
    let at: i64 = redis::cmd("PEXPIRETIME").arg(key).query(c).unwrap();
    (at >= 0).then_some(at)
}

#[tokio::test]
async fn only_unchanged_sources_are_deleted() {
    let server = RedisServer::start();
    let mut c = server.conn();
    for k in ["same", "changed", "ttl", "gone"] {
        let () = c.hset(k, "f", "v").unwrap();
    }
    let () = c.expire("ttl", 3600).unwrap();
    let payloads: Vec<(Vec<u8>, Option<i64>)> = ["same", "changed", "ttl", "gone"]
        .iter()
        .map(|k| (dump(&mut c, k), expire_at(&mut c, k)))
        .collect();
    // Writes that land after the copy.
    let () = c.hset("changed", "f", "v2").unwrap();
    let () = c.expire("ttl", 7200).unwrap();
    let () = c.del("gone").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let keys: [&[u8]; 4] = [b"same", b"changed", b"ttl", b"gone"];
    let checks: Vec<DeleteIfUnchanged> = keys
        .iter()
        .zip(&payloads)
        .map(|(k, (p, at))| DeleteIfUnchanged {
            key: k,
            witness: Witness::Payload(p),
            expire_at: *at,
        })
        .collect();
    let out = delete_if_unchanged(&endpoint, &checks).await.unwrap();
    use SourceDelete::*;
    assert_eq!(out, vec![Deleted, Changed, Changed, Gone]);
    assert!(!c.exists::<_, bool>("same").unwrap());
    assert_eq!(c.hget::<_, _, String>("changed", "f").unwrap(), "v2");
    assert!(c.exists::<_, bool>("ttl").unwrap());

    // By digest: the payload never leaves the server.
    let () = c.rpush("big", &["a", "b"]).unwrap();
    let digest = source_digest(&endpoint, b"big")
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let () = c.rpush("big", "c").unwrap();
    fn check(d: &str) -> DeleteIfUnchanged<'_> {
        DeleteIfUnchanged {
            key: b"big",
            witness: Witness::Sha1(d),
            expire_at: None,
        }
    }
    let d = digest.clone();
    assert_eq!(
        delete_if_unchanged(&endpoint, &[check(&d)]).await.unwrap(),
        vec![Changed]
    );
    let digest = source_digest(&endpoint, b"big")
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        delete_if_unchanged(&endpoint, &[check(&digest)])
            .await
            .unwrap(),
        vec![Deleted]
    );
    assert_eq!(
        source_digest(&endpoint, b"big").await.unwrap().unwrap(),
        None
    );
}

#[tokio::test]
async fn a_move_on_one_server_copies_and_deletes_in_one_step() {
    let server = RedisServer::start();
    let mut c = server.conn();
    let () = c.set_ex("a", "1", 3600).unwrap();
    let () = c.set("b", "2").unwrap();
    let () = c.set("new:b", "theirs").unwrap();
    let () = c.set("c", "3").unwrap();
    let endpoint = RedisEndpoint::connect(&server.url(), None).await.unwrap();
    let items: Vec<(&[u8], &[u8], bool)> = vec![
        (b"a", b"new:a", false),
        (b"b", b"new:b", false),
        (b"gone", b"new:gone", false),
        (b"c", b"new:c", true),
    ];
    let out = move_on_server(&endpoint, &items, None).await.unwrap();
    assert_eq!(
        out,
        vec![Moved::Moved, Moved::Exists, Moved::Gone, Moved::Moved]
    );
    assert!(!c.exists::<_, bool>("a").unwrap());
    assert!(c.pttl::<_, i64>("new:a").unwrap() > 3_590_000);
    assert_eq!(c.get::<_, String>("b").unwrap(), "2");
    assert_eq!(c.get::<_, String>("new:b").unwrap(), "theirs");
    assert_eq!(c.get::<_, String>("new:c").unwrap(), "3");
    // Into another database of the same server.
    let () = c.set("d", "4").unwrap();
    let out = move_on_server(&endpoint, &[(b"d", b"d", false)], Some(3))
        .await
        .unwrap();
    assert_eq!(out, vec![Moved::Moved]);
    assert!(!c.exists::<_, bool>("d").unwrap());
    let () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
    assert_eq!(c.get::<_, String>("d").unwrap(), "4");
}
